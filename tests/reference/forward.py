"""Plain torch forward pass for llama / qwen2 / llama-MoE (Mixtral layout) / qwen2moe /
qwen3moe / olmoe GGUF models.

Architecture differences, as in the Hugging Face model definitions:
  qwen2, qwen2moe   Q/K/V biases; qwen2moe adds a shared expert gated by sigmoid(w . x)
                    and keeps the top-k softmax probabilities as they are (norm_topk_prob false)
  qwen3moe          RMSNorm of each query / key head (weight [head_dim]) before RoPE;
                    top-k probabilities renormalized (norm_topk_prob true)
  olmoe             RMSNorm of the whole query / key projection (weights [q_dim], [kv_dim])
                    before RoPE; top-k probabilities not renormalized
  all but llama     rotate-half ("neox") RoPE

No KV cache tricks, no fused kernels: every call evaluates the whole token sequence
with full causal attention. Weights are dequantized exactly (gguf_reader/dequant) and
then computed in float32 (default) or float64.
"""

import math

import numpy as np
import torch

from gguf_reader import GGUFFile

SUPPORTED_ARCHS = ("llama", "qwen2", "qwen2moe", "qwen3moe", "olmoe")
MOE_ARCHS = ("qwen2moe", "qwen3moe", "olmoe")


class HParams:
    pass


def _meta(g, arch, key, default=None, required=False):
    full = "%s.%s" % (arch, key)
    if full in g.metadata:
        return g.metadata[full]
    if required:
        raise KeyError("missing metadata key %s" % full)
    return default


def read_hparams(g):
    arch = g.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise ValueError("unsupported architecture %r (supported: %s)" % (arch, ", ".join(SUPPORTED_ARCHS)))
    hp = HParams()
    hp.arch = arch
    hp.n_embd = int(_meta(g, arch, "embedding_length", required=True))
    hp.n_layer = int(_meta(g, arch, "block_count", required=True))
    hp.n_head = int(_meta(g, arch, "attention.head_count", required=True))
    hp.n_head_kv = int(_meta(g, arch, "attention.head_count_kv", hp.n_head))
    hp.eps = float(_meta(g, arch, "attention.layer_norm_rms_epsilon", 1e-5))
    hp.n_ctx_train = int(_meta(g, arch, "context_length", 2048))
    hp.n_ff = _meta(g, arch, "feed_forward_length", None)
    hp.head_dim = int(_meta(g, arch, "attention.key_length", hp.n_embd // hp.n_head))
    hp.n_rot = int(_meta(g, arch, "rope.dimension_count", hp.head_dim))
    hp.rope_base = float(_meta(g, arch, "rope.freq_base", 10000.0))
    hp.n_expert = int(_meta(g, arch, "expert_count", 0) or 0)
    hp.n_expert_used = int(_meta(g, arch, "expert_used_count", 0) or 0)
    # rope scaling: only "none" and "linear" are supported
    hp.rope_scale = 1.0  # positions are divided by this factor
    stype = _meta(g, arch, "rope.scaling.type", None)
    sfactor = _meta(g, arch, "rope.scaling.factor", None)
    if sfactor is None:
        sfactor = _meta(g, arch, "rope.scale_linear", None)  # older key
        if sfactor is not None and stype is None:
            stype = "linear"
    if stype not in (None, "none", "linear"):
        raise ValueError("unsupported rope scaling type %r" % stype)
    if stype == "linear" and sfactor is not None and float(sfactor) > 0:
        hp.rope_scale = float(sfactor)
    # llama.cpp: llama uses "normal" rope (adjacent pairs), qwen2 uses "neox" (split halves)
    hp.rope_neox = arch != "llama"
    # Mixtral and Qwen3-MoE renormalize the kept top-k probabilities; Qwen2-MoE and OLMoE do not.
    hp.norm_topk = arch in ("llama", "qwen3moe")
    hp.qk_norm = {"qwen3moe": "head", "olmoe": "whole"}.get(arch)
    if arch in MOE_ARCHS and (hp.n_expert <= 0 or hp.n_expert_used <= 0):
        raise ValueError("%s needs expert_count and expert_used_count" % arch)
    if hp.n_expert_used > hp.n_expert:
        raise ValueError("expert_used_count %d > expert_count %d" % (hp.n_expert_used, hp.n_expert))
    if hp.n_head % hp.n_head_kv != 0:
        raise ValueError("head_count %d not a multiple of head_count_kv %d" % (hp.n_head, hp.n_head_kv))
    if hp.n_rot > hp.head_dim or hp.n_rot % 2:
        raise ValueError("bad rope.dimension_count %d" % hp.n_rot)
    return hp


class Model:
    def __init__(self, path, dtype=torch.float32):
        self.path = path
        self.dtype = dtype
        g = GGUFFile(path)
        self.gguf = g
        hp = read_hparams(g)
        self.hp = hp

        def T(name, optional=False):
            if name not in g.tensors:
                if optional:
                    return None
                raise KeyError("missing tensor %s" % name)
            return torch.from_numpy(np.ascontiguousarray(g.tensor(name))).to(dtype)

        self.tok_embd = T("token_embd.weight")  # (n_vocab, n_embd)
        self.n_vocab = self.tok_embd.shape[0]
        if self.tok_embd.shape[1] != hp.n_embd:
            raise ValueError("token_embd width %d != embedding_length %d" % (self.tok_embd.shape[1], hp.n_embd))
        self.output_norm = T("output_norm.weight")
        # Llama 3.1-style per-frequency divisors of the RoPE angles, if the file has them.
        self.rope_freqs = T("rope_freqs.weight", optional=True)
        out = T("output.weight", optional=True)
        self.output = out if out is not None else self.tok_embd
        q_dim = hp.n_head * hp.head_dim
        kv_dim = hp.n_head_kv * hp.head_dim
        self.layers = []
        # OLMoE has no Q/K/V/O biases; any in the file are not part of the model.
        has_bias = hp.arch != "olmoe"
        for i in range(hp.n_layer):
            p = "blk.%d." % i
            L = {
                "attn_norm": T(p + "attn_norm.weight"),
                "wq": T(p + "attn_q.weight"),
                "wk": T(p + "attn_k.weight"),
                "wv": T(p + "attn_v.weight"),
                "wo": T(p + "attn_output.weight"),
                "bq": T(p + "attn_q.bias", optional=True) if has_bias else None,
                "bk": T(p + "attn_k.bias", optional=True) if has_bias else None,
                "bv": T(p + "attn_v.bias", optional=True) if has_bias else None,
                "bo": T(p + "attn_output.bias", optional=True) if has_bias else None,
                "ffn_norm": T(p + "ffn_norm.weight"),
                "q_norm": T(p + "attn_q_norm.weight", optional=hp.qk_norm is None),
                "k_norm": T(p + "attn_k_norm.weight", optional=hp.qk_norm is None),
            }
            if hp.qk_norm == "head":
                want_q, want_k = (hp.head_dim,), (hp.head_dim,)
            else:
                want_q, want_k = (q_dim,), (kv_dim,)
            if hp.qk_norm and (tuple(L["q_norm"].shape) != want_q or tuple(L["k_norm"].shape) != want_k):
                raise ValueError("layer %d: q/k norm shapes %s %s, expected %s %s" % (
                    i, tuple(L["q_norm"].shape), tuple(L["k_norm"].shape), want_q, want_k))
            if L["wq"].shape != (q_dim, hp.n_embd) or L["wk"].shape != (kv_dim, hp.n_embd) \
                    or L["wv"].shape != (kv_dim, hp.n_embd):
                raise ValueError("layer %d: unexpected attention weight shapes" % i)
            if hp.n_expert > 0:
                L["gate_inp"] = T(p + "ffn_gate_inp.weight")       # (n_expert, n_embd)
                L["gate_exps"] = T(p + "ffn_gate_exps.weight")     # (n_expert, n_ff, n_embd)
                L["up_exps"] = T(p + "ffn_up_exps.weight")         # (n_expert, n_ff, n_embd)
                L["down_exps"] = T(p + "ffn_down_exps.weight")     # (n_expert, n_embd, n_ff)
                if L["gate_inp"].shape != (hp.n_expert, hp.n_embd):
                    raise ValueError("layer %d: ffn_gate_inp shape %s" % (i, tuple(L["gate_inp"].shape)))
                for name in ("gate_exps", "up_exps", "down_exps"):
                    if L[name].dim() != 3 or L[name].shape[0] != hp.n_expert:
                        raise ValueError("layer %d: %s shape %s" % (i, name, tuple(L[name].shape)))
                if hp.arch == "qwen2moe":
                    L["shexp_gate_inp"] = T(p + "ffn_gate_inp_shexp.weight").reshape(-1)  # (n_embd,)
                    L["shexp_gate"] = T(p + "ffn_gate_shexp.weight")   # (n_ff_shexp, n_embd)
                    L["shexp_up"] = T(p + "ffn_up_shexp.weight")       # (n_ff_shexp, n_embd)
                    L["shexp_down"] = T(p + "ffn_down_shexp.weight")   # (n_embd, n_ff_shexp)
            else:
                L["gate"] = T(p + "ffn_gate.weight")
                L["up"] = T(p + "ffn_up.weight")
                L["down"] = T(p + "ffn_down.weight")
            self.layers.append(L)
        self._rope_cache = {}

    # ------------------------------------------------------------------------
    def _rmsnorm(self, x, w):
        ms = (x * x).mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(ms + self.hp.eps) * w

    def _rope_cos_sin(self, n_pos):
        hp = self.hp
        if n_pos not in self._rope_cache:
            half = hp.n_rot // 2
            i = torch.arange(half, dtype=torch.float64)
            inv_freq = hp.rope_base ** (-2.0 * i / hp.n_rot)
            if self.rope_freqs is not None:
                inv_freq = inv_freq / self.rope_freqs.to(torch.float64).reshape(-1)
            pos = torch.arange(n_pos, dtype=torch.float64) / hp.rope_scale
            ang = pos[:, None] * inv_freq[None, :]  # (n_pos, half)
            self._rope_cache[n_pos] = (torch.cos(ang).to(self.dtype), torch.sin(ang).to(self.dtype))
        return self._rope_cache[n_pos]

    def _rope(self, x):
        """x: (n_heads, n_pos, head_dim)"""
        hp = self.hp
        n_pos = x.shape[1]
        cos, sin = self._rope_cos_sin(n_pos)
        r = x[..., :hp.n_rot]
        rest = x[..., hp.n_rot:]
        if hp.rope_neox:
            half = hp.n_rot // 2
            a, b = r[..., :half], r[..., half:]
            ra = a * cos - b * sin
            rb = a * sin + b * cos
            r = torch.cat([ra, rb], dim=-1)
        else:
            a, b = r[..., 0::2], r[..., 1::2]
            ra = a * cos - b * sin
            rb = a * sin + b * cos
            r = torch.stack([ra, rb], dim=-1).reshape(r.shape)
        return torch.cat([r, rest], dim=-1)

    def _attention(self, x, L):
        hp = self.hp
        n = x.shape[0]
        q = x @ L["wq"].T
        k = x @ L["wk"].T
        v = x @ L["wv"].T
        if L["bq"] is not None:
            q = q + L["bq"]
        if L["bk"] is not None:
            k = k + L["bk"]
        if L["bv"] is not None:
            v = v + L["bv"]
        hd = hp.head_dim
        if hp.qk_norm == "whole":
            q = self._rmsnorm(q, L["q_norm"])
            k = self._rmsnorm(k, L["k_norm"])
        q = q.view(n, hp.n_head, hd)
        k = k.view(n, hp.n_head_kv, hd)
        if hp.qk_norm == "head":
            q = self._rmsnorm(q, L["q_norm"])
            k = self._rmsnorm(k, L["k_norm"])
        q = q.transpose(0, 1)      # (H, n, hd)
        k = k.transpose(0, 1)      # (Hkv, n, hd)
        v = v.view(n, hp.n_head_kv, hd).transpose(0, 1)
        q = self._rope(q)
        k = self._rope(k)
        rep = hp.n_head // hp.n_head_kv
        # query head h uses kv head h // rep
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        scores = (q @ k.transpose(1, 2)) * (1.0 / math.sqrt(hd))  # (H, n, n)
        mask = torch.ones(n, n, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        p = torch.softmax(scores, dim=-1)
        o = (p @ v).transpose(0, 1).reshape(n, hp.n_head * hd)
        o = o @ L["wo"].T
        if L["bo"] is not None:
            o = o + L["bo"]
        return o

    @staticmethod
    def _swiglu(x, wg, wu, wd):
        return (torch.nn.functional.silu(x @ wg.T) * (x @ wu.T)) @ wd.T

    def _ffn(self, x, L):
        hp = self.hp
        if hp.n_expert == 0:
            return self._swiglu(x, L["gate"], L["up"], L["down"])
        logits = x @ L["gate_inp"].T                     # (n, n_expert)
        probs = torch.softmax(logits, dim=-1)
        k = hp.n_expert_used
        w, idx = torch.topk(probs, k, dim=-1)            # (n, k)
        if hp.norm_topk:
            w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        for t in range(x.shape[0]):
            xt = x[t:t + 1]
            acc = torch.zeros_like(xt)
            for j in range(k):
                e = int(idx[t, j])
                acc = acc + w[t, j] * self._swiglu(xt, L["gate_exps"][e], L["up_exps"][e], L["down_exps"][e])
            out[t] = acc[0]
        if "shexp_gate_inp" in L:
            gate = torch.sigmoid(x @ L["shexp_gate_inp"])[:, None]   # (n, 1)
            out = out + gate * self._swiglu(x, L["shexp_gate"], L["shexp_up"], L["shexp_down"])
        return out

    @torch.no_grad()
    def forward(self, tokens):
        """tokens: list of ints -> logits tensor (n_tokens, n_vocab)"""
        if len(tokens) == 0:
            raise ValueError("empty token list")
        for t in tokens:
            if not 0 <= t < self.n_vocab:
                raise ValueError("token id %d out of range [0, %d)" % (t, self.n_vocab))
        x = self.tok_embd[torch.tensor(tokens, dtype=torch.long)]
        for L in self.layers:
            x = x + self._attention(self._rmsnorm(x, L["attn_norm"]), L)
            x = x + self._ffn(self._rmsnorm(x, L["ffn_norm"]), L)
        x = self._rmsnorm(x, self.output_norm)
        return x @ self.output.T

    def greedy(self, tokens, n):
        toks = list(tokens)
        out = []
        for _ in range(n):
            logits = self.forward(toks)
            nxt = int(torch.argmax(logits[-1]))
            out.append(nxt)
            toks.append(nxt)
        return out
