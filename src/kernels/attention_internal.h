// Per-path pieces of CausalAttention (attention.cpp dispatches).
#pragma once

#include <cstdint>

namespace tierlm {

// The query rows of n_heads consecutive heads (q, out: head h at + h * head_dim) that share
// one key/value head: out_h = sum_p softmax_p(scale * q_h . k_p) v_p, p < n_keys, with
// k_p = k + p * kv_stride (likewise v). scores: n_heads rows of scores_stride >= n_keys
// floats of scratch. Returns false (and does nothing) for shapes it has no kernel for.
// Only callable with AVX-512.
bool AttentionGroupAvx512(const float* q, int64_t n_heads, const float* k, const float* v, int64_t head_dim,
                          int64_t kv_stride, int64_t n_keys, float scale, float* scores, int64_t scores_stride,
                          float* out);

}  // namespace tierlm
