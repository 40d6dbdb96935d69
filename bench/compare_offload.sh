#!/usr/bin/env bash
# Decode speed of a model larger than the free memory: llama.cpp (mmap) against tierlm
# (--mem-budget), with tierlm-balloon locking all but FREE GiB of memory for both.
#
#   LLAMA_CPP_DIR=path/to/llama.cpp/build bench/compare_offload.sh model.gguf [FREE_GIB ...]
#
# llama.cpp runs as its users run it on such a machine: mmap, no weight repacking (repacking
# copies the weights into anonymous memory, which cannot fit). llama-bench has no switch
# for that, so its decode speed is read from llama-completion's "eval time" line (-nr),
# with a 64-token context like llama-bench's tg (its default 4096 would add GiBs of KV).
#
# Default FREE_GIB list: 3 2 1. Environment: TIERLM (build/tierlm), BALLOON
# (build/tierlm-balloon), THREADS (2), TG (16), MARGIN_MIB (256: tierlm's budget is the free
# memory minus this, for its code and the page cache of the binaries).
# Run on an otherwise idle machine.
set -euo pipefail
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build directory (with bin/llama-bench)}"
TIERLM=${TIERLM:-build/tierlm}
BALLOON=${BALLOON:-build/tierlm-balloon}
THREADS=${THREADS:-2}
TG=${TG:-16}
MARGIN_MIB=${MARGIN_MIB:-256}
model=${1:?usage: $0 model.gguf [FREE_GIB ...]}
shift
frees=("$@")
[ ${#frees[@]} -gt 0 ] || frees=(3 2 1)

out=$(mktemp -d)
balloon_pid=""
cleanup() { [ -n "$balloon_pid" ] && kill "$balloon_pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

drop_cache() { /usr/bin/python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$model"; }

echo "| free memory | llama.cpp tg$TG t/s | tierlm tg$TG t/s | ratio | tierlm bound t/s | of bound | disk MiB/token | stall | hit rate |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for free in "${frees[@]}"; do
  "$BALLOON" --leave "${free}G" > "$out/balloon" &
  balloon_pid=$!
  for _ in $(seq 1 600); do grep -q ready "$out/balloon" 2>/dev/null && break; sleep 0.5; done
  grep -q ready "$out/balloon" || { echo "error: balloon did not start" >&2; exit 1; }
  drop_cache
  "$LLAMA_CPP_DIR/bin/llama-completion" -m "$model" -t "$THREADS" -c 64 -p "Once upon a time" -n "$TG" --temp 0 \
    -no-cnv -nr --ignore-eos > "$out/llama.log" 2>&1 < /dev/null || true
  /usr/bin/python3 - "$out" <<'PY'
import json, re, sys
text = open(sys.argv[1] + "/llama.log", errors="replace").read()
m = re.search(r"\beval time =.*?([0-9.]+) tokens per second", text.replace("prompt eval time", "prompt_eval"))
json.dump([{"avg_ts": float(m.group(1)) if m else 0.0}], open(sys.argv[1] + "/llama.json", "w"))
PY
  drop_cache
  budget_mib=$(( free * 1024 - MARGIN_MIB ))
  "$TIERLM" bench -m "$model" -t "$THREADS" -p 0 -n "$TG" -r 1 -o json --mem-budget "${budget_mib}M" 2>/dev/null > "$out/tierlm.json" || true
  if ! kill -0 "$balloon_pid" 2>/dev/null; then
    echo "| $free GiB | the balloon died (out of memory?): no result |"; balloon_pid=""; continue
  fi
  kill "$balloon_pid"; wait "$balloon_pid" 2>/dev/null || true; balloon_pid=""
  /usr/bin/python3 - "$out" "$free" <<'PY'
import json, sys
out, free = sys.argv[1], sys.argv[2]
l = json.load(open(f"{out}/llama.json"))[0]; t = json.load(open(f"{out}/tierlm.json"))[0]
bound = t.get("bw_limit_ts", 0)
frac = f"{100 * t['avg_ts'] / bound:.0f}%" if bound else "n/a"
ratio = t['avg_ts'] / l['avg_ts'] if l['avg_ts'] else float('nan')
print(f"| {free} GiB | {l['avg_ts']:.3f} | {t['avg_ts']:.3f} | {ratio:.2f} | {bound:.3f} | {frac} | "
      f"{t['read_bytes_per_pass'] / 2**20:.0f} | {100 * t['stall_fraction']:.0f}% | {100 * t['hit_rate']:.1f}% |")
PY
done
