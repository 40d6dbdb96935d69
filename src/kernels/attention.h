// Causal multi-head attention of new queries over a layer's cached keys and values.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace tierlm {

struct AttentionShape {
  int64_t n_head;     // query heads
  int64_t n_head_kv;  // key/value heads (n_head is a multiple: grouped-query attention)
  int64_t head_dim;
  float scale;        // usually 1 / sqrt(head_dim)
};

// For each new token t < n_tok at position pos0 + t and each head h:
//   out[t][h] = sum_p softmax_p(scale * q[t][h] . k[p][h/g]) v[p][h/g],  p in [0, pos0 + t]
// q, out: [n_tok][n_head * head_dim]; k, v: [>= pos0 + n_tok][n_head_kv * head_dim].
// Scores are computed one query row at a time (never a [n_tok][n_ctx] matrix).
void CausalAttention(const AttentionShape& s, const float* q, int64_t n_tok, int64_t pos0, const float* k,
                     const float* v, float* out, ThreadPool* pool);

}  // namespace tierlm
