#!/usr/bin/env bash
# MoE decode speed against llama.cpp, with the model larger than the free memory or not:
# llama.cpp (mmap, no weight repacking) against tierlm (--mem-budget, expert cache), with
# tierlm-balloon locking all but FREE GiB of memory for both; "unlimited": no balloon,
# no budget (both hold the whole model in memory).
#
#   LLAMA_CPP_DIR=path/to/llama.cpp/build bench/compare_moe.sh model.gguf [FREE_GIB|unlimited ...]
#
# Both engines decode random tokens, one per step, as llama-bench's tg does (greedy
# decoding of a random-weight model repeats one token, and any expert cache would look
# perfect). With a balloon, llama.cpp runs as its users run it on such a machine: mmap and
# no repacking (a repacked copy cannot fit); llama-bench cannot turn repacking off, so it
# runs llama-completion -nr on a prompt of TG random vocabulary tokens evaluated one token
# per batch (-b 1 -ub 1): its "prompt eval" rate is the decode rate on random tokens.
# Unlimited: llama-bench tg with its defaults (repacking on: its fastest in memory). tierlm runs
# `tierlm bench -n TG` (random tokens; one warm-up pass, then REPS timed passes) and
# prints its routing statistics, expert hit rate and gate-ahead accuracy beside the speed.
#
# Default list: 4 8 unlimited. Environment: TIERLM (build/tierlm), BALLOON
# (build/tierlm-balloon), THREADS (2), TG (12), REPS (1), MARGIN_MIB (256: tierlm's budget
# is the free memory minus this), MOE_MISS (exact; also lowbit, auto), TIERLM_ARGS (extra
# bench arguments). Run on an otherwise idle machine.
set -euo pipefail
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build directory (with bin/llama-completion)}"
here=$(cd "$(dirname "$0")" && pwd)
TIERLM=${TIERLM:-build/tierlm}
BALLOON=${BALLOON:-build/tierlm-balloon}
THREADS=${THREADS:-2}
TG=${TG:-12}
REPS=${REPS:-1}
MARGIN_MIB=${MARGIN_MIB:-256}
MOE_MISS=${MOE_MISS:-exact}
TIERLM_ARGS=${TIERLM_ARGS:-}
model=${1:?usage: $0 model.gguf [FREE_GIB|unlimited ...]}
shift
frees=("$@")
[ ${#frees[@]} -gt 0 ] || frees=(4 8 unlimited)

out=$(mktemp -d)
balloon_pid=""
cleanup() { [ -n "$balloon_pid" ] && kill "$balloon_pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

drop_cache() { /usr/bin/python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$model"; }
/usr/bin/python3 "$here/random_prompt.py" "$model" "$TG" 7 > "$out/prompt.txt"

run_llama() {
  "$LLAMA_CPP_DIR/bin/llama-completion" -m "$model" -t "$THREADS" -c $((TG * 3 + 16)) -b 1 -ub 1 -f "$out/prompt.txt" \
    -n 1 --temp 0 -no-cnv -nr > "$out/llama.log" 2>&1 < /dev/null || true
  /usr/bin/python3 - "$out" <<'PY'
import json, re, sys
text = open(sys.argv[1] + "/llama.log", errors="replace").read()
m = re.search(r"prompt eval time =\s*([0-9.]+) ms /\s*([0-9]+) tokens.*?([0-9.]+) tokens per second", text)
json.dump({"avg_ts": float(m.group(3)) if m else 0.0, "tokens": int(m.group(2)) if m else 0},
          open(sys.argv[1] + "/llama.json", "w"))
PY
}

echo "| free memory | llama.cpp t/s | tierlm t/s | ratio | tierlm bound t/s | of bound | expert MiB/token from disk | expert cache hit rate | read ahead | low-bit share | gate-ahead accuracy | consecutive-token expert overlap |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for free in "${frees[@]}"; do
  budget_arg=()
  if [ "$free" != unlimited ]; then
    "$BALLOON" --leave "${free}G" > "$out/balloon" &
    balloon_pid=$!
    for _ in $(seq 1 600); do grep -q ready "$out/balloon" 2>/dev/null && break; sleep 0.5; done
    grep -q ready "$out/balloon" || { echo "error: balloon did not start" >&2; exit 1; }
    budget_arg=(--mem-budget "$(( free * 1024 - MARGIN_MIB ))M")
    drop_cache
  fi
  if [ "$free" = unlimited ]; then
    # In memory llama.cpp may repack (its default, and its fastest): llama-bench tg, which
    # also decodes random tokens after a warm-up pass in the same process.
    "$LLAMA_CPP_DIR/bin/llama-bench" -m "$model" -t "$THREADS" -p 0 -n "$TG" -r 3 -o json > "$out/llama-bench.json" 2>/dev/null || true
    /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1]))[0]; json.dump({'avg_ts': r['avg_ts']}, open(sys.argv[2],'w'))" \
      "$out/llama-bench.json" "$out/llama.json" || echo '{"avg_ts": 0}' > "$out/llama.json"
  else
    run_llama
  fi
  drop_cache
  # shellcheck disable=SC2086
  "$TIERLM" bench -m "$model" -t "$THREADS" -p 0 -n "$TG" -r "$REPS" -o json "${budget_arg[@]}" --moe-miss "$MOE_MISS" \
    $TIERLM_ARGS 2>"$out/tierlm.err" > "$out/tierlm.json" || { echo "tierlm failed:" >&2; cat "$out/tierlm.err" >&2; }
  if [ -n "$balloon_pid" ]; then
    if ! kill -0 "$balloon_pid" 2>/dev/null; then
      echo "| $free GiB | the balloon died (out of memory?): no result |"; balloon_pid=""; continue
    fi
    kill "$balloon_pid"; wait "$balloon_pid" 2>/dev/null || true; balloon_pid=""
  fi
  /usr/bin/python3 - "$out" "$free" <<'PY'
import json, sys
out, free = sys.argv[1], sys.argv[2]
l = json.load(open(f"{out}/llama.json"))
try:
    t = json.load(open(f"{out}/tierlm.json"))[0]
except Exception:
    print(f"| {free} | {l['avg_ts']:.3f} | failed | | | | | | | | | |"); sys.exit(0)
bound = t.get("bw_limit_ts", 0)
frac = f"{100 * t['avg_ts'] / bound:.0f}%" if bound else "n/a"
ratio = t["avg_ts"] / l["avg_ts"] if l["avg_ts"] else float("nan")
label = free if free == "unlimited" else f"{free} GiB"
print(f"| {label} | {l['avg_ts']:.3f} | {t['avg_ts']:.3f} | {ratio:.2f} | {bound:.3f} | {frac} | "
      f"{t['read_bytes_per_pass'] / 2**20:.0f} | {100 * t.get('moe_expert_hit_rate', 0):.1f}% | "
      f"{100 * t.get('moe_read_ahead_share', 0):.1f}% | "
      f"{100 * t.get('moe_lowbit_share', 0):.1f}% | {100 * t.get('moe_gate_ahead_accuracy', 0):.1f}% | "
      f"{100 * t.get('moe_consecutive_overlap', 0):.1f}% |")
PY
done
