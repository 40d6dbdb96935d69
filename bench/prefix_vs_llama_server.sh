#!/usr/bin/env bash
# Time to first token of one long prompt through the HTTP API: tierlm serve (cold; again in
# the same process; after a restart with --prefix-cache-dir; on a second server sharing a
# Redis) against llama-server (cold; again in the same process; after a restart; after a
# restart with its slot saved and restored). Each request asks for one token, so its wall
# time is its time to first token. Prints a markdown table.
#
#   [VOCAB=32000] [LLAMA_EXTRA=...] bench/prefix_vs_llama_server.sh MODEL.gguf TIERLM LLAMA_SERVER [N_PROMPT] [REPS]
#
# llama-server caps -c at the model's training context; for a prompt longer than that,
# LLAMA_EXTRA="--override-kv llama.context_length=int:8192" lifts the cap (tierlm has none).
#
# Needs curl, redis-server and python3 (for the JSON). Uses ports 18181-18184 and 16390 and a
# scratch directory under /var/tmp; removes what it made.
set -euo pipefail
model=$1 tierlm=$2 llama=$3 n=${4:-4096} reps=${5:-3}
work=$(mktemp -d /var/tmp/tierlm-prefix-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ctx=$((n + 512))
/usr/bin/python3 - "$n" "${VOCAB:-32000}" > "$work/body.json" <<'PY'
import json, random, sys
n, vocab = int(sys.argv[1]), int(sys.argv[2]); random.seed(1)
print(json.dumps({"prompt": [1] + [random.randrange(3, vocab) for _ in range(n - 1)], "max_tokens": 1,
                  "temperature": 0, "cache_prompt": True}))
PY
wait_up() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 never came up" >&2; return 1; }
ask() {  # port -> seconds, cached tokens
  curl -s -o "$work/out.json" -w '%{time_total}' "http://127.0.0.1:$1/v1/completions" -H 'Content-Type: application/json' \
    -d @"$work/body.json" > "$work/t"
  /usr/bin/python3 -c "import json;j=json.load(open('$work/out.json'));u=j.get('usage',{});d=u.get('prompt_tokens_details') or {};print(open('$work/t').read().strip(), d.get('cached_tokens', j.get('timings',{}).get('cache_n','?')))"
}
start_tierlm() {  # port, extra flags...
  local port=$1; shift
  "$tierlm" serve -m "$model" -c "$ctx" -np 1 --port "$port" -q "$@" > "$work/tierlm-$port.log" 2>&1 &
  pids+=($!); wait_up "$port"
}
start_llama() {  # port, extra flags...
  local port=$1; shift
  # shellcheck disable=SC2086
  "$llama" -m "$model" -c "$ctx" -np 1 --port "$port" --no-warmup ${LLAMA_EXTRA:-} "$@" > "$work/llama-$port.log" 2>&1 &
  pids+=($!); wait_up "$port"
}
stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3"; }

redis-server --port 16390 --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
sleep 0.5
echo "| engine, start | TTFT s (each repetition) | cached tokens |"
echo "|---|---|---|"
for r in $(seq "$reps"); do
  rm -rf "$work/cache"; redis-cli -p 16390 flushall >/dev/null
  # tierlm: cold, then the same prompt again (memory), on one server with the disk and Redis tiers.
  start_tierlm 18181 --prefix-cache-dir "$work/cache" --redis redis://127.0.0.1:16390
  read -r t c < <(ask 18181); row "tierlm, cold" "$t" "$c"
  read -r t c < <(ask 18181); row "tierlm, again (memory)" "$t" "$c"
  stop_last
  # A restart on the same directory (no Redis): from the disk.
  start_tierlm 18182 --prefix-cache-dir "$work/cache"
  read -r t c < <(ask 18182); row "tierlm, after a restart (disk)" "$t" "$c"
  stop_last
  # Another server, no directory of its own: from Redis.
  start_tierlm 18183 --redis redis://127.0.0.1:16390
  read -r t c < <(ask 18183); row "tierlm, another server (Redis)" "$t" "$c"
  stop_last
  # llama-server: cold, again, after a restart, after a restart with the slot restored.
  mkdir -p "$work/slots"
  start_llama 18184 --slot-save-path "$work/slots/"
  read -r t c < <(ask 18184); row "llama-server, cold" "$t" "$c"
  read -r t c < <(ask 18184); row "llama-server, again (its slot)" "$t" "$c"
  curl -s -X POST "http://127.0.0.1:18184/slots/0?action=save" -H 'Content-Type: application/json' -d '{"filename":"p.bin"}' > /dev/null
  stop_last
  start_llama 18184 --slot-save-path "$work/slots/"
  read -r t c < <(ask 18184); row "llama-server, after a restart" "$t" "$c"
  stop_last
  start_llama 18184 --slot-save-path "$work/slots/"
  t0=$(date +%s.%N)
  curl -s -X POST "http://127.0.0.1:18184/slots/0?action=restore" -H 'Content-Type: application/json' -d '{"filename":"p.bin"}' > /dev/null
  read -r t c < <(ask 18184)
  total=$(/usr/bin/python3 -c "import time;print(round(time.time()-$t0,3))")
  row "llama-server, after a restart + slot restore (restore + request)" "$total" "$c"
  stop_last
done
