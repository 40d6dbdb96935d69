# tierlm: the two commands a fresh Debian 12 machine needs.
#   make run    installs Debian packages, builds, runs the main job on an embedded default model
#   make test   installs Debian packages, builds, runs every test
BUILD ?= build
JOBS ?= $(shell nproc)
DEPS := build-essential cmake ninja-build pkg-config git xz-utils libgtest-dev libgmock-dev liburing-dev libxxhash-dev \
        nlohmann-json3-dev python3 python3-numpy python3-torch clang libclang-rt-14-dev \
        libcpp-httplib-dev curl nodejs libhiredis-dev redis-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RUN_ARGS ?= -p "Once upon a time" -n 200

.PHONY: all deps build run test fuzz clean

all: build

deps:
	@missing=""; for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/tierlm run $(RUN_ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 1
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-30}

fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DTIERLM_BUILD_TESTS=OFF \
	  -DTIERLM_BUILD_FUZZERS=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target gguf_fuzzer server_request_fuzzer prefix_index_fuzzer redis_url_fuzzer kv_trace_fuzzer \
	  routing_trace_fuzzer
	mkdir -p $(BUILD)-fuzz/corpus $(BUILD)-fuzz/corpus-server $(BUILD)-fuzz/corpus-prefix $(BUILD)-fuzz/corpus-redis-url \
	  $(BUILD)-fuzz/corpus-kv-trace $(BUILD)-fuzz/corpus-routing-trace
	./$(BUILD)-fuzz/fuzz/gguf_fuzzer -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=2048 \
	  -artifact_prefix=$(BUILD)-fuzz/ $(BUILD)-fuzz/corpus fuzz/corpus/gguf
	./$(BUILD)-fuzz/fuzz/server_request_fuzzer -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=2048 \
	  -max_len=65536 -artifact_prefix=$(BUILD)-fuzz/ $(BUILD)-fuzz/corpus-server fuzz/corpus/server_request
	./$(BUILD)-fuzz/fuzz/prefix_index_fuzzer -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=2048 \
	  -artifact_prefix=$(BUILD)-fuzz/ $(BUILD)-fuzz/corpus-prefix fuzz/corpus/prefix_index
	./$(BUILD)-fuzz/fuzz/redis_url_fuzzer -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=2048 \
	  -max_len=4096 -artifact_prefix=$(BUILD)-fuzz/ $(BUILD)-fuzz/corpus-redis-url fuzz/corpus/redis_url
	./$(BUILD)-fuzz/fuzz/kv_trace_fuzzer -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=2048 \
	  -max_len=65536 -artifact_prefix=$(BUILD)-fuzz/ $(BUILD)-fuzz/corpus-kv-trace fuzz/corpus/kv_trace
	./$(BUILD)-fuzz/fuzz/routing_trace_fuzzer -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=2048 \
	  -max_len=8192 -artifact_prefix=$(BUILD)-fuzz/ $(BUILD)-fuzz/corpus-routing-trace fuzz/corpus/routing_trace

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz
