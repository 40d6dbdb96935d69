#!/usr/bin/python3
"""Trains tierlm's long-context test model: a small `llama` (GQA, RoPE, SwiGLU) that reads
4096 tokens and retrieves a pass key from anywhere in them.

Data, all from Debian packages and this script:
  * the King James Bible (package bible-kjv: `bible -f Gen1:1-Rev22:21`), one chapter per
    line; every 25th chapter is held out (tests/models/longctx-heldout.txt) for perplexity
    and as the filler of evaluation prompts;
  * pass-key documents (passkey.py): a header, filler, a needle "The pass key is #NNNNN#.
    Remember it. #NNNNN# is the pass key." at a random depth, more filler, the question
    ("... The pass key is #") and the answer.
The vocabulary is stories260K's (SentencePiece-style, 512 tokens, byte fallback), read from
tests/models/stories260K.gguf, so tierlm and llama.cpp both tokenize the model's text.

Seeded: the same command gives the same model on the same machine and torch build (torch's
CPU kernels may round differently on another CPU).

  /usr/bin/python3 tools/longctx/train_longctx.py --steps 650 --stop-after 600
"""

import argparse
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, HERE)

import gguf_reader  # noqa: E402
import passkey  # noqa: E402
import spm  # noqa: E402
from gguf_write import GGML_F16, GGML_F32, write_gguf  # noqa: E402

HELD_OUT_EVERY = 25


def load_vocab():
    f = gguf_reader.GGUFFile(os.path.join(ROOT, "tests", "models", "stories260K.gguf"))
    md = f.metadata
    return md, spm.SpmVocab(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.scores"])


def bible_chapters():
    """[(book+chapter, text)] in canonical order, verse numbers dropped."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    chapters = []
    key = None
    for line in out.splitlines():
        if not line.strip():
            continue
        ref, _, verse = line.partition(" ")
        book_ch = ref.split(":")[0]
        if book_ch != key:
            chapters.append([book_ch, []])
            key = book_ch
        chapters[-1][1].append(verse.strip())
    return [(k, " ".join(v)) for k, v in chapters]


class Config:
    vocab = 512
    dim = 256
    n_layer = 4
    n_head = 4
    n_kv = 2
    ffn = 768
    ctx = 4096
    rope_base = 10000.0
    eps = 1e-5


def rope_tables(cfg, n):
    hd = cfg.dim // cfg.n_head
    inv = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    """llama.cpp's normal RoPE: adjacent pairs (x[2i], x[2i+1]) rotate by pos * base^(-2i/d)."""
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    r0 = x0 * cos - x1 * sin
    r1 = x0 * sin + x1 * cos
    return torch.stack((r0, r1), dim=-1).flatten(-2)


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hd = cfg.dim // cfg.n_head
        self.cfg = cfg
        self.attn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.wq = torch.nn.Linear(cfg.dim, cfg.n_head * hd, bias=False)
        self.wk = torch.nn.Linear(cfg.dim, cfg.n_kv * hd, bias=False)
        self.wv = torch.nn.Linear(cfg.dim, cfg.n_kv * hd, bias=False)
        self.wo = torch.nn.Linear(cfg.n_head * hd, cfg.dim, bias=False)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.w_gate = torch.nn.Linear(cfg.dim, cfg.ffn, bias=False)
        self.w_up = torch.nn.Linear(cfg.dim, cfg.ffn, bias=False)
        self.w_down = torch.nn.Linear(cfg.ffn, cfg.dim, bias=False)

    def forward(self, x, cos, sin, mask):
        cfg = self.cfg
        b, t, _ = x.shape
        hd = cfg.dim // cfg.n_head
        h = self.attn_norm(x)
        q = self.wq(h).view(b, t, cfg.n_head, hd).transpose(1, 2)
        k = self.wk(h).view(b, t, cfg.n_kv, hd).transpose(1, 2)
        v = self.wv(h).view(b, t, cfg.n_kv, hd).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        rep = cfg.n_head // cfg.n_kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
        att = att + mask
        att = torch.softmax(att, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, t, cfg.dim)
        x = x + self.wo(o)
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Model(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = torch.nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = torch.nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.eps)
        self.out = torch.nn.Linear(cfg.dim, cfg.vocab, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02
                if name.endswith("wo.weight") or name.endswith("w_down.weight"):
                    std = 0.02 / math.sqrt(2 * cfg.n_layer)
                torch.nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        t = ids.shape[1]
        cos, sin = rope_tables(self.cfg, t)
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        return self.out(self.norm(x))


def export_gguf(model, cfg, md, path):
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    meta = {
        "general.architecture": "llama",
        "general.name": "tierlm-longctx",
        "general.file_type": 1,
        "llama.context_length": cfg.ctx,
        "llama.embedding_length": cfg.dim,
        "llama.feed_forward_length": cfg.ffn,
        "llama.block_count": cfg.n_layer,
        "llama.attention.head_count": cfg.n_head,
        "llama.attention.head_count_kv": cfg.n_kv,
        "llama.rope.dimension_count": cfg.dim // cfg.n_head,
        "llama.rope.freq_base": float(cfg.rope_base),
        "llama.attention.layer_norm_rms_epsilon": float(cfg.eps),
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": list(md["tokenizer.ggml.tokens"]),
        "tokenizer.ggml.scores": ("f32[]", md["tokenizer.ggml.scores"]),
        "tokenizer.ggml.token_type": ("i32[]", md["tokenizer.ggml.token_type"]),
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
    }
    tensors = [("token_embd.weight", sd["embed.weight"], GGML_F16)]
    for i in range(cfg.n_layer):
        p = "blocks.%d." % i
        g = "blk.%d." % i
        tensors += [
            (g + "attn_norm.weight", sd[p + "attn_norm.weight"], GGML_F32),
            (g + "attn_q.weight", sd[p + "wq.weight"], GGML_F16),
            (g + "attn_k.weight", sd[p + "wk.weight"], GGML_F16),
            (g + "attn_v.weight", sd[p + "wv.weight"], GGML_F16),
            (g + "attn_output.weight", sd[p + "wo.weight"], GGML_F16),
            (g + "ffn_norm.weight", sd[p + "ffn_norm.weight"], GGML_F32),
            (g + "ffn_gate.weight", sd[p + "w_gate.weight"], GGML_F16),
            (g + "ffn_up.weight", sd[p + "w_up.weight"], GGML_F16),
            (g + "ffn_down.weight", sd[p + "w_down.weight"], GGML_F16),
        ]
    tensors += [("output_norm.weight", sd["norm.weight"], GGML_F32), ("output.weight", sd["out.weight"], GGML_F16)]
    tmp = path + ".tmp"
    write_gguf(tmp, meta, tensors)
    os.replace(tmp, path)


class Data:
    def __init__(self, vocab, seed):
        chapters = bible_chapters()
        self.train_text = [t for i, (_, t) in enumerate(chapters) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
        self.heldout_text = [t for i, (_, t) in enumerate(chapters) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
        nl = vocab.encode_piece("\n")
        ids = []
        for t in self.train_text:
            ids += vocab.encode(t) + nl
        self.train = np.asarray(ids, dtype=np.int64)
        ids = []
        for t in self.heldout_text:
            ids += vocab.encode(t) + nl
        self.heldout = np.asarray(ids, dtype=np.int64)
        self.vocab = vocab
        self.rng = random.Random(seed)
        self.pieces = passkey.Pieces(vocab)

    def plain(self, n):
        """n + 1 tokens: BOS then a random slice of the training text."""
        s = self.rng.randrange(0, len(self.train) - n)
        return np.concatenate(([1], self.train[s : s + n])), None

    def passkey_doc(self, n, source=None, rng=None):
        """n + 1 tokens, and the positions (in the n-token target) of the answer tokens."""
        rng = rng or self.rng
        source = self.train if source is None else source
        key = rng.randrange(10000, 100000)
        depth = rng.random()
        ids, answer_start = self.pieces.document(source, n + 1, key, depth, rng)
        targets = list(range(answer_start - 1, n))
        return np.asarray(ids, dtype=np.int64), targets


def batch(data, t, b, p_passkey):
    xs, ws = [], []
    for _ in range(b):
        if data.rng.random() < p_passkey:
            ids, ans = data.passkey_doc(t)
        else:
            ids, ans = data.plain(t)
        w = np.zeros(t, dtype=np.float32)
        if ans:
            w[ans] = 1.0
        xs.append(ids)
        ws.append(w)
    x = torch.from_numpy(np.stack(xs))
    return x[:, :-1], x[:, 1:], torch.from_numpy(np.stack(ws))


@torch.no_grad()
def eval_passkey(model, data, t, n_docs, seed):
    """Share of pass-key documents of t tokens (held-out filler, depths spread evenly) whose
    every answer token is the model's argmax (the greedy answer, teacher-forced)."""
    rng = random.Random(seed)
    ok = 0
    for i in range(n_docs):
        key = rng.randrange(10000, 100000)
        depth = i / max(1, n_docs - 1)
        ids, answer_start = data.pieces.document(data.heldout, t, key, depth, rng)
        x = torch.tensor([ids[:-1]])
        logits = model(x)[0]
        pred = logits[answer_start - 1 :].argmax(-1).numpy()
        ok += int((pred == np.asarray(ids[answer_start:])).all())
    return ok / n_docs


@torch.no_grad()
def eval_ppl(model, data, t, n_windows):
    tot, cnt = 0.0, 0
    for w in range(n_windows):
        s = w * t
        if s + t + 1 > len(data.heldout):
            break
        x = torch.from_numpy(np.concatenate(([1], data.heldout[s : s + t])))[None]
        logits = model(x[:, :-1])
        tot += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
        cnt += t
    return math.exp(tot / cnt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "models", "longctx.gguf"))
    ap.add_argument("--heldout-out", default=os.path.join(ROOT, "tests", "models", "longctx-heldout.txt"))
    ap.add_argument("--steps", type=int, default=650)
    ap.add_argument("--tokens-per-step", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="end after this many steps (the schedule still spans --steps); 0: --steps")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    md, vocab = load_vocab()
    data = Data(vocab, args.seed)
    with open(args.heldout_out, "w") as f:
        f.write("\n".join(data.heldout_text) + "\n")
    print("train tokens %d, held-out tokens %d" % (len(data.train), len(data.heldout)), flush=True)
    cfg = Config()
    model = Model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print("parameters %d" % n_params, flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    start = 0
    if args.checkpoint and os.path.exists(args.checkpoint):
        ck = torch.load(args.checkpoint)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start = ck["step"]
        data.rng.setstate(ck["rng"])
    schedule = [(128, 0.12), (256, 0.24), (512, 0.40), (1024, 0.58), (2048, 0.78), (4096, 1.01)]
    warm = 60
    t0 = time.time()
    end = args.stop_after if 0 < args.stop_after < args.steps else args.steps
    for step in range(start, end):
        frac = step / args.steps
        if step < warm:
            lr = args.lr * (step + 1) / warm
        else:
            lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (args.steps - warm))))
        for g in opt.param_groups:
            g["lr"] = lr
        # Curriculum: the copy circuit forms on short documents (the needle is near), then
        # the length doubles phase by phase, so retrieval sharpens as the distractors grow.
        t = next(length for length, upto in schedule if frac < upto)
        b = max(1, args.tokens_per_step // t)
        x, y, w = batch(data, t, b, p_passkey=0.6 if t < 512 else 1.0)
        logits = model(x)
        ce = F.cross_entropy(logits.reshape(-1, cfg.vocab), y.reshape(-1), reduction="none").view(b, t)
        loss = ce.mean()
        if w.sum() > 0:
            loss = loss + (ce * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0:
            ans = ((ce * w).sum() / w.sum()).item() if w.sum() > 0 else float("nan")
            print("step %d t %d lm %.3f answer %.3f lr %.2e  %.0fs" % (step, t, ce.mean().item(), ans, lr,
                                                                        time.time() - t0), flush=True)
        if (step + 1) % args.eval_every == 0 or step + 1 == end:
            model.eval()
            accs = {n: eval_passkey(model, data, n, 11, seed=7) for n in (1024, 4096)}
            ppl = eval_ppl(model, data, 1024, 8)
            model.train()
            print("eval step %d passkey %s ppl@1024 %.3f" % (step + 1, accs, ppl), flush=True)
            export_gguf(model, cfg, md, args.out)
            if args.checkpoint:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                            "rng": data.rng.getstate()}, args.checkpoint)
    print("wrote %s" % args.out, flush=True)


if __name__ == "__main__":
    main()
