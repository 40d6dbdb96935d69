#!/usr/bin/python3
"""Independent reference of tierlm's local-routing-consistency metrics (moe-report).

SRP and SCH of Liang et al., "Not All Models Suit Expert Offloading: On Local Routing
Consistency of Mixture-of-Expert Models" (arXiv 2505.16056), written straight from their
definitions as the authors' published code computes them (github.com/ljcleo/moe-lrc), the
slow way: every window counted from scratch, every cache victim chosen by recounting the
next m tokens. Nothing here shares code or data structures with src/moe/.

  routing_consistency.py TRACE [--seg-lengths 4,16] [--cache-ratios 1,2] [--compare JSON]

Prints {"srp": {m: f1 or null}, "sch": {m: {r: rate}}, "sch_model": {m: {r: rate}}}; with
--compare, reads tierlm's `moe-report --json` output and exits 1 on any difference above
1e-9 (printing each).
"""
import argparse
import json
import sys


def read_trace(path):
    with open(path) as f:
        lines = f.read().split("\n")
    head = lines[0].split()
    assert head[0] == "tierlm-routing-trace", "not a routing trace"
    version = int(head[1])
    n_layer, n_expert, n_used, n_tokens = (int(x) for x in head[2:6])
    body = 1
    starts = [0]
    if version == 2:
        seq_line = lines[1].split()
        assert seq_line[0] == "sequences"
        starts = [int(x) for x in seq_line[1:]]
        body = 2
    tokens = []  # tokens[t][layer] = list of experts, in recorded order
    for t in range(n_tokens):
        row = lines[body + t].split()
        experts = [int(row[2 * i]) for i in range(n_layer * n_used)]
        tokens.append([experts[l * n_used:(l + 1) * n_used] for l in range(n_layer)])
    bounds = starts + [n_tokens]
    seqs = [tokens[bounds[i]:bounds[i + 1]] for i in range(len(starts)) if bounds[i] < bounds[i + 1]]
    return n_layer, n_expert, n_used, seqs


def srp(n_layer, n_expert, seqs, m):
    best = None
    for tau in range(m + 1):
        tp = pred = actual = 0
        windows = 0
        for seq in seqs:
            for s in range(len(seq) - m + 1):
                windows += 1
                for layer in range(n_layer):
                    for e in range(n_expert):
                        c = sum(1 for t in range(s, s + m) if e in seq[t][layer])
                        actual += c
                        if c >= tau:
                            tp += c
                            pred += m
        if windows == 0:
            return None
        f1 = 2 * tp / max(1, pred + actual)
        best = f1 if best is None else max(best, f1)
    return best


def cache_hits(seq_accesses, m, capacity):
    """seq_accesses[t] = experts token t uses, in order. The cache keeps, on a miss with no
    room, every expert but the one with the fewest uses in tokens [t, t + m) that are still to
    come (an access already made in token t no longer counts), ties: least recently used."""
    n = len(seq_accesses)
    cache = set()
    seen = set()
    last = {}
    clock = 0
    hits = 0
    for t, token in enumerate(seq_accesses):
        distinct = len(seen)
        for x in token:  # look-ups against the cache before the token
            if x in seen:
                hits += x in cache
            else:
                hits += distinct < capacity
                distinct += 1
        seen.update(token)
        for j, x in enumerate(token):
            if x not in cache:
                if len(cache) >= capacity:
                    def future(y):
                        uses = sum(1 for u in range(t, min(n, t + m)) if y in seq_accesses[u])
                        return uses - (1 if y in token[:j] else 0)
                    victim = min(cache, key=lambda y: (future(y), last[y]))
                    cache.remove(victim)
                cache.add(x)
            clock += 1
            last[x] = clock
    return hits


def sch(n_layer, n_expert, n_used, seqs, m, ratio, model_level):
    layer_sets = [list(range(n_layer))] if model_level else [[l] for l in range(n_layer)]
    space = n_layer * n_expert if model_level else n_expert
    capacity = min(space, max(1, int(ratio * n_used * (n_layer if model_level else 1) + 0.5)))
    layer_rates = []
    for layers in layer_sets:
        rates = []
        for seq in seqs:
            acc = [[l * n_expert + e for l in layers for e in tok[l]] for tok in seq]
            rates.append(cache_hits(acc, m, capacity) / (len(seq) * n_used * len(layers)))
        layer_rates.append(sum(rates) / len(rates))
    return sum(layer_rates) / len(layer_rates)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--seg-lengths", default="4,16,64,256")
    ap.add_argument("--cache-ratios", default="1,2,4")
    ap.add_argument("--compare")
    a = ap.parse_args()
    n_layer, n_expert, n_used, seqs = read_trace(a.trace)
    ms = [int(x) for x in a.seg_lengths.split(",")]
    ratios = a.cache_ratios.split(",")
    out = {"srp": {}, "sch": {}, "sch_model": {}}
    for m in ms:
        out["srp"][str(m)] = srp(n_layer, n_expert, seqs, m)
        for key, model_level in (("sch", False), ("sch_model", True)):
            out[key][str(m)] = {r: sch(n_layer, n_expert, n_used, seqs, m, float(r), model_level) for r in ratios}
    print(json.dumps(out, indent=1))
    if a.compare:
        with open(a.compare) as f:
            got = json.load(f)
        bad = 0
        for m in map(str, ms):
            pairs = [("srp", m, out["srp"][m], got["srp"][m])]
            for key in ("sch", "sch_model"):
                pairs += [(key, m + "/" + r, out[key][m][r], got[key][m][r]) for r in ratios]
            for key, where, want, have in pairs:
                if (want is None) != (have is None) or (want is not None and abs(want - have) > 1e-9):
                    print(f"MISMATCH {key}[{where}]: reference {want}, tierlm {have}")
                    bad += 1
        print("mismatches:", bad)
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
