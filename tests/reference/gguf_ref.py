#!/usr/bin/python3
"""Independent reference implementation (GGUF reader + dequantization + torch forward).

Usage (always with Debian's /usr/bin/python3, which has numpy and torch):
  /usr/bin/python3 tests/reference/gguf_ref.py info   MODEL.gguf
  /usr/bin/python3 tests/reference/gguf_ref.py logits MODEL.gguf --tokens 1,403,407 [--out FILE] [--f64]
  /usr/bin/python3 tests/reference/gguf_ref.py greedy MODEL.gguf --tokens 1,403 -n 16 [--out FILE] [--f64]
  /usr/bin/python3 tests/reference/gguf_ref.py kl     MODEL.gguf --tokens 1,403,407 --lowbit-cache FILE [--out FILE] [--f64]

logits prints {"logits": [[n_vocab floats] per position]};
greedy prints {"tokens": [generated ids]} (the continuation only, prompt excluded).
--lowbit-cache FILE (logits, greedy): every expert slice "name#e" of the stacked *_exps
tensors that tierlm's low-bit expert cache FILE holds is replaced by its dequantized
low-bit copy (the reference of tierlm's --moe-miss lowbit-all).
kl prints {"kl": [KL(exact || lowbit) per position], "mean_kl", "max_kl",
"top1_agree" (fraction of positions whose argmax agrees), "top1_exact", "top1_lowbit",
"n_replaced"}: softmax in float64 of the exact and the lowbit-all logits.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from gguf_reader import GGUFFile  # noqa: E402


def _parse_tokens(s):
    try:
        return [int(t) for t in s.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise argparse.ArgumentTypeError("--tokens must be a comma separated list of integers")


def _emit(obj, out):
    text = json.dumps(obj)
    if out:
        with open(out, "w") as f:
            f.write(text)
            f.write("\n")
    else:
        sys.stdout.write(text)
        sys.stdout.write("\n")


def _short(v):
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, list):
        if len(v) > 8:
            return "[%s, ... (%d items)]" % (", ".join(repr(x) for x in v[:8]), len(v))
        return repr(v)
    return repr(v)


def cmd_info(args):
    g = GGUFFile(args.model)
    print("file: %s" % args.model)
    print("gguf version %d, %d metadata keys, %d tensors, alignment %d, data at %d"
          % (g.version, len(g.metadata), len(g.tensors), g.alignment, g.data_start))
    print("metadata:")
    for k, v in g.metadata.items():
        print("  %s = %s" % (k, _short(v)))
    print("tensors:")
    for ti in g.tensors.values():
        print("  %-32s %-6s ne=%-22s offset=%d bytes=%d"
              % (ti.name, ti.type_name, list(ti.ne), ti.offset, ti.nbytes))
    return 0


def _load(args):
    import torch
    from forward import Model
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    return Model(args.model, dtype=torch.float64 if args.f64 else torch.float32)


def _apply_lowbit(m, args):
    from lowbit_cache import LowbitCache, apply_to_model
    cache = LowbitCache(args.lowbit_cache, model_path=args.model)
    cache.check_model_header(m.gguf)
    n = apply_to_model(m, cache)
    if n == 0:
        raise ValueError("%s: no expert slices in the low-bit cache" % args.lowbit_cache)
    return n


def cmd_logits(args):
    m = _load(args)
    if args.lowbit_cache:
        _apply_lowbit(m, args)
    logits = m.forward(args.tokens)
    _emit({"logits": logits.double().tolist()}, args.out)
    return 0


def cmd_greedy(args):
    m = _load(args)
    if args.lowbit_cache:
        _apply_lowbit(m, args)
    toks = m.greedy(args.tokens, args.n)
    _emit({"tokens": toks}, args.out)
    return 0


def cmd_kl(args):
    import torch
    m = _load(args)
    exact = m.forward(args.tokens).double()
    n_replaced = _apply_lowbit(m, args)
    lowbit = m.forward(args.tokens).double()
    lp = torch.log_softmax(exact, dim=-1)
    lq = torch.log_softmax(lowbit, dim=-1)
    kl = (lp.exp() * (lp - lq)).sum(dim=-1)
    top_p = exact.argmax(dim=-1)
    top_q = lowbit.argmax(dim=-1)
    _emit({"kl": kl.tolist(), "mean_kl": float(kl.mean()), "max_kl": float(kl.max()),
           "top1_agree": float((top_p == top_q).double().mean()), "top1_exact": top_p.tolist(),
           "top1_lowbit": top_q.tolist(), "n_replaced": n_replaced}, args.out)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    sub.required = True
    p = sub.add_parser("info", help="print metadata and tensor list")
    p.add_argument("model")
    p.set_defaults(fn=cmd_info)
    for name, fn in (("logits", cmd_logits), ("greedy", cmd_greedy), ("kl", cmd_kl)):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("--tokens", type=_parse_tokens, required=True)
        p.add_argument("--out", default=None, help="write JSON here instead of stdout")
        p.add_argument("--f64", action="store_true", help="compute in float64")
        p.add_argument("--lowbit-cache", default=None, required=(name == "kl"),
                       help="tierlm low-bit expert cache: compute experts from its copies")
        if name == "greedy":
            p.add_argument("-n", type=int, default=16, help="number of tokens to generate")
        p.set_defaults(fn=fn)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (ValueError, KeyError, OSError) as e:
        sys.stderr.write("gguf_ref: error: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
