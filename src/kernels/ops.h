// Element-wise and per-row operations of a transformer block, on f32 vectors.
// out may alias an input wherever the inputs are read at the same index only.
#pragma once

#include <cstdint>

namespace tierlm {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], i < n.   x, weight, out: [n]
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// x[0..n) = softmax(x), computed stably (max subtracted). n >= 1.
void Softmax(float* x, int64_t n);

// SwiGLU: out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
void SwiGlu(const float* gate, const float* up, float* out, int64_t n);

// out[i] = a[i] + b[i].
void Add(const float* a, const float* b, float* out, int64_t n);

// inv_freq[i] = base^(-2i / n_rot), i < n_rot / 2: the rotation speeds RoPE uses.
void RopeInvFreq(float base, int64_t n_rot, float* inv_freq);

// Rotates the first n_rot dimensions of each head of x in place, for position pos:
// pair k (k < n_rot / 2) turns by angle pos * freq_scale * inv_freq[k]. The pair is
// (2k, 2k + 1) in the llama "normal" style, (k, k + n_rot / 2) in the neox style.
//   x: [n_head][head_dim] f32; inv_freq: [n_rot / 2] (see RopeInvFreq)
// REQUIRES: n_rot even, n_rot <= head_dim.
void Rope(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float freq_scale,
          const float* inv_freq, bool neox);

}  // namespace tierlm
