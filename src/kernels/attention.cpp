#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention_internal.h"
#include "kernels/cpu_features.h"

namespace tierlm {

void CausalAttention(const AttentionShape& s, const float* q, int64_t n_tok, int64_t pos0, const float* k,
                     const float* v, float* out, ThreadPool* pool) {
  const int64_t hd = s.head_dim;
  const int64_t q_stride = s.n_head * hd;
  const int64_t kv_stride = s.n_head_kv * hd;
  const int64_t group = s.n_head / s.n_head_kv;

  const bool avx512 = UsesAvx512(ActiveKernelPath());
  const int nth = pool ? pool->size() : 1;
  // Work unit: one token and a run of heads sharing a key/value head (the whole group, or
  // a part of it in decode when there would be too few units to share out).
  const int64_t per_unit = n_tok > 1 ? group : std::max<int64_t>(1, std::min(group, s.n_head / (2 * nth)));
  const int64_t subs = (group + per_unit - 1) / per_unit;
  const int64_t units_per_tok = s.n_head_kv * subs;

  auto unit = [&](int64_t u, std::vector<float>& scores) {
    // Row t costs pos0 + t + 1 keys: the most expensive tokens go first.
    const int64_t t = n_tok - 1 - u / units_per_tok;
    const int64_t kvh = u % units_per_tok / subs;
    const int64_t h0 = kvh * group + u % subs * per_unit;
    const int64_t nh = std::min(per_unit, (kvh + 1) * group - h0);
    const int64_t n_keys = pos0 + t + 1;
    const int64_t stride = (n_keys + 15) / 16 * 16 + 16;
    if (static_cast<int64_t>(scores.size()) < stride * nh) scores.resize(static_cast<size_t>(stride * nh));
    const float* qh = q + t * q_stride + h0 * hd;
    float* oh = out + t * q_stride + h0 * hd;
    if (avx512 && AttentionGroupAvx512(qh, nh, k + kvh * hd, v + kvh * hd, hd, kv_stride, n_keys, s.scale,
                                       scores.data(), stride, oh))
      return;
    for (int64_t h = 0; h < nh; ++h) {
      const float* qr = qh + h * hd;
      float* orow = oh + h * hd;
      float max_score = -INFINITY;
      for (int64_t p = 0; p < n_keys; ++p) {
        const float* kp = k + p * kv_stride + kvh * hd;
        float dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += qr[i] * kp[i];
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
      std::fill(orow, orow + hd, 0.0f);
      for (int64_t p = 0; p < n_keys; ++p) {
        const float w = scores[p] * inv;
        const float* vp = v + p * kv_stride + kvh * hd;
        for (int64_t i = 0; i < hd; ++i) orow[i] += w * vp[i];
      }
    }
  };

  // Units are handed out one at a time from a shared counter, so threads finish together
  // and a thread the OS deschedules does not hold the others up.
  auto units = [&](int64_t begin, int64_t end) {
    static thread_local std::vector<float> scores;
    for (int64_t u = begin; u < end; ++u) unit(u, scores);
  };
  const int64_t n_units = n_tok * units_per_tok;
  if (pool) pool->ParallelForDynamic(n_units, 1, units);
  else units(0, n_units);
}

}  // namespace tierlm
