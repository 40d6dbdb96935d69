#!/usr/bin/env bash
# Runs llama-bench and tierlm bench on the same GGUF files, interleaved, and prints the
# tokens/s of each with the ratio tierlm / llama.cpp.
#
#   LLAMA_CPP_DIR=path/to/llama.cpp/build bench/compare_llamacpp.sh model1.gguf [model2.gguf ...]
#
# Environment: TIERLM (binary, default build/tierlm), THREADS (2), PP (512), TG (128),
# ROUNDS (5: each round runs each engine once per test, alternating who goes first).
# Do not run anything else meanwhile: on a small machine a busy core ruins the numbers.
set -euo pipefail
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to a llama.cpp build directory (with bin/llama-bench)}"
TIERLM=${TIERLM:-build/tierlm}
THREADS=${THREADS:-2}
PP=${PP:-512}
TG=${TG:-128}
ROUNDS=${ROUNDS:-5}
LLAMA_BENCH="$LLAMA_CPP_DIR/bin/llama-bench"
[ -x "$LLAMA_BENCH" ] || { echo "error: $LLAMA_BENCH not found" >&2; exit 2; }
[ -x "$TIERLM" ] || { echo "error: $TIERLM not found (build first or set TIERLM)" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: LLAMA_CPP_DIR=... $0 model.gguf [...]" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for model in "$@"; do
  name=$(basename "$model")
  for round in $(seq 1 "$ROUNDS"); do
    for test in "-p $PP -n 0" "-p 0 -n $TG"; do
      tag="$round-${test// /_}"
      run_llama() { "$LLAMA_BENCH" -m "$model" -t "$THREADS" $test -r 1 -o json 2>/dev/null > "$out/llama-$name-$tag.json"; }
      run_tierlm() { "$TIERLM" bench -m "$model" -t "$THREADS" $test -r 1 -o json --no-bandwidth 2>/dev/null > "$out/tierlm-$name-$tag.json"; }
      if [ $((round % 2)) -eq 1 ]; then run_llama; run_tierlm; else run_tierlm; run_llama; fi
    done
  done
  # The decode bandwidth limit, measured once per model.
  "$TIERLM" bench -m "$model" -t "$THREADS" -p 0 -n 16 -r 1 -o json > "$out/bw-$name.json" 2>/dev/null || true
done

/usr/bin/python3 - "$out" "$@" <<'PY'
import glob, json, os, statistics, sys
out, models = sys.argv[1], sys.argv[2:]
def rows(prefix):
    items = []
    for path in sorted(glob.glob(prefix + "-*.json")):
        items += json.load(open(path))
    return items
print("| model | test | llama.cpp t/s (median, min-max) | tierlm t/s (median, min-max) | ratio | tierlm of bw limit (triad; pure read) |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for m in models:
    name = os.path.basename(m)
    l, t = rows(f"{out}/llama-{name}"), rows(f"{out}/tierlm-{name}")
    bw = rd = None
    try:
        probe = json.load(open(f"{out}/bw-{name}.json"))[0]
        bw, rd = probe["bw_limit_ts"], probe.get("read_limit_ts")
    except Exception:
        pass
    for kind in ("pp", "tg"):
        def pick(rs):
            return [r["avg_ts"] for r in rs if (r["n_prompt"] > 0) == (kind == "pp") and (r["n_gen"] > 0) == (kind == "tg")]
        ls, ts = pick(l), pick(t)
        if not ls or not ts: continue
        lm, tm = statistics.median(ls), statistics.median(ts)
        n = [r["n_prompt"] if kind == "pp" else r["n_gen"] for r in t if (r["n_prompt"] > 0) == (kind == "pp")][0]
        frac = f"{100 * tm / bw:.0f}% of {bw:.1f}" if (bw and kind == "tg") else ""
        if frac and rd:
            frac += f"; {100 * tm / rd:.0f}% of {rd:.1f}"
        print(f"| {name} | {kind}{n} | {lm:.2f} ({min(ls):.2f}-{max(ls):.2f}) | {tm:.2f} ({min(ts):.2f}-{max(ts):.2f}) | {tm / lm:.2f} | {frac} |")
PY
