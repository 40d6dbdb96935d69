#!/usr/bin/env bash
# Re-records every llama.cpp fixture in tests/fixtures/llamacpp/ (README there).
#   LLAMA_CPP_DIR=/path/to/llama.cpp TIERLM=build/tierlm tools/fixture_gen/regenerate.sh
# llama.cpp must be built in $LLAMA_CPP_DIR/build as static libraries:
#   CC=clang CXX=clang++ cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
#     -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
#     -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF && cmake --build build --target llama ggml
# Models are written with `tierlm synth` (deterministic), so the fixtures match the files the
# tests write. stories260K comes from tests/models/. Outputs over 100 KB are xz-compressed.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp checkout built in build/}"
TIERLM="${TIERLM:-build/tierlm}"
L="$LLAMA_CPP_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
clang++ -std=c++17 -O2 -I"$L/include" -I"$L/ggml/include" tools/fixture_gen/gen_fixture.cpp -o "$work/gen_fixture" \
  "$L/build/src/libllama.a" "$L/build/ggml/src/libggml.a" "$L/build/ggml/src/libggml-cpu.a" \
  "$L/build/ggml/src/libggml-base.a" -lpthread -ldl -lm -fopenmp
out=tests/fixtures/llamacpp

# The dense models and the llama-layout MoE: four prompts, 48 greedy steps.
prompts=("Once upon a time" "Lily and Tom went to the park. They saw a big dog." "The little bird"
         "One day, a girl named Mia found a shiny stone in the garden and she")
record() {  # name model n_greedy prompts...
  local name=$1 model=$2 n=$3
  shift 3
  "$work/gen_fixture" "$model" "$work/$name.json" "$n" "$@" > "$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; exit 1; }
  if [ "$(stat -c %s "$work/$name.json")" -gt 100000 ]; then
    xz -9e -T1 -c "$work/$name.json" > "$out/$name.json.xz"
    rm -f "$out/$name.json"
  else
    cp "$work/$name.json" "$out/$name.json"
  fi
  echo "recorded $name"
}
record stories260K tests/models/stories260K.gguf 48 "${prompts[@]}"
# The trained long-context model (tools/longctx): King James text and a short pass-key document.
record longctx tests/models/longctx.gguf 48 "In the beginning God created the heaven and the earth." \
  "And the LORD spake unto Moses, saying," "Blessed are the" \
  "There is a pass key hidden in this text. Find it and remember it. The pass key is #31415#. Remember it. #31415# is the pass key. And it came to pass in those days. What is the pass key? The pass key is #"
for pt in tiny:f32 tiny:f16 tiny:bf16 tiny:q8_0 tiny:q4_0 tiny:q4_k_m qwen2-tiny:f16 qwen2-tiny:q4_k_m \
          moe-tiny:q8_0 moe-tiny:q4_0; do
  p=${pt%%:*} t=${pt##*:}
  "$TIERLM" synth --preset "$p" --type "$t" --seed 42 -q -o "$work/$p-$t.gguf" > /dev/null
  record "$p-$t" "$work/$p-$t.gguf" 48 "${prompts[@]}"
done
# The other MoE architectures: one prompt, 32 greedy steps.
for p in qwen3moe-tiny qwen2moe-tiny olmoe-tiny; do
  for t in f32 q4_0; do
    "$TIERLM" synth --preset "$p" --type "$t" --seed 42 -q -o "$work/$p-$t.gguf" > /dev/null
    record "$p-$t" "$work/$p-$t.gguf" 32 "Once upon a time"
  done
done
