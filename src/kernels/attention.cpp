#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tierlm {

void CausalAttention(const AttentionShape& s, const float* q, int64_t n_tok, int64_t pos0, const float* k,
                     const float* v, float* out, ThreadPool* pool) {
  const int64_t hd = s.head_dim;
  const int64_t q_stride = s.n_head * hd;
  const int64_t kv_stride = s.n_head_kv * hd;
  const int64_t group = s.n_head / s.n_head_kv;
  const int64_t n_ctx = pos0 + n_tok;

  // One work item per (token, head); each thread keeps one score row.
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(n_ctx));
    std::vector<float> acc(static_cast<size_t>(hd));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / s.n_head;
      const int64_t h = item % s.n_head;
      const int64_t kvh = h / group;
      const float* qh = q + t * q_stride + h * hd;
      const int64_t n_keys = pos0 + t + 1;
      float max_score = -INFINITY;
      for (int64_t p = 0; p < n_keys; ++p) {
        const float* kp = k + p * kv_stride + kvh * hd;
        float dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += qh[i] * kp[i];
        dot *= s.scale;
        scores[p] = dot;
        max_score = std::max(max_score, dot);
      }
      float sum = 0;
      for (int64_t p = 0; p < n_keys; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        sum += scores[p];
      }
      const float inv = 1.0f / sum;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = 0; p < n_keys; ++p) {
        const float w = scores[p] * inv;
        const float* vp = v + p * kv_stride + kvh * hd;
        for (int64_t i = 0; i < hd; ++i) acc[i] += w * vp[i];
      }
      std::copy(acc.begin(), acc.end(), out + t * q_stride + h * hd);
    }
  };
  const int64_t n_items = n_tok * s.n_head;
  if (pool) {
    pool->ParallelFor(n_items, 1, work);
  } else {
    work(0, n_items);
  }
}

}  // namespace tierlm
