// AVX-512 attention rows: scores 16 keys at a time (dot products reduced by one transpose
// tree), a vectorized exp for the softmax, and the weighted sum of values with the
// weights broadcast.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/attention_internal.h"
#include "kernels/simd_math_avx512.h"

namespace tierlm {
namespace {

// Scores of one query row, softmax numerators in scores[0..n_keys); returns 1 / their sum.
template <int kDimVecs>
float ScoresRow(const float* q, const float* k, int64_t kv_stride, int64_t n_keys, float scale, float* scores) {
  __m512 qv[kDimVecs];
  #pragma GCC unroll 16
  for (int i = 0; i < kDimVecs; ++i) qv[i] = _mm512_loadu_ps(q + 16 * i);
  // Scores, 16 keys at a time.
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int64_t p = 0;
  for (; p + 16 <= n_keys; p += 16) {
    __m512 a[16];
    #pragma GCC unroll 16
    for (int s = 0; s < 16; ++s) {
      const float* kp = k + (p + (s % 4) * 4 + s / 4) * kv_stride;
      __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kp));
      #pragma GCC unroll 16
      for (int i = 1; i < kDimVecs; ++i) acc = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(kp + 16 * i), acc);
      a[s] = acc;
    }
    const __m512 sv = _mm512_mul_ps(ReduceTree16(a), _mm512_set1_ps(scale));
    _mm512_storeu_ps(scores + p, sv);
    vmax = _mm512_max_ps(vmax, sv);
  }
  float max_score = _mm512_reduce_max_ps(vmax);
  for (; p < n_keys; ++p) {
    const float* kp = k + p * kv_stride;
    __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kp));
    #pragma GCC unroll 16
    for (int i = 1; i < kDimVecs; ++i) acc = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(kp + 16 * i), acc);
    scores[p] = _mm512_reduce_add_ps(acc) * scale;
    max_score = std::max(max_score, scores[p]);
  }
  // Softmax numerators and their sum.
  const __m512 mv = _mm512_set1_ps(max_score);
  __m512 sum = _mm512_setzero_ps();
  for (p = 0; p < n_keys; p += 16) {
    const __mmask16 m = n_keys - p >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n_keys - p)) - 1);
    const __m512 e = Exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + p), mv));
    const __m512 em = _mm512_maskz_mov_ps(m, e);
    sum = _mm512_add_ps(sum, em);
    _mm512_mask_storeu_ps(scores + p, m, em);
  }
  return 1.0f / _mm512_reduce_add_ps(sum);
}

// out[h] = inv[h] * sum_p scores[h][p] v_p for kHeads heads sharing the values, each value
// row loaded once for all of them.
template <int kHeads, int kDimVecs>
void WeightedValues(const float* scores, int64_t scores_stride, const float* inv, const float* v, int64_t kv_stride,
                    int64_t n_keys, float* out, int64_t out_stride) {
  __m512 acc[kHeads][kDimVecs];
  #pragma GCC unroll 16
  for (int h = 0; h < kHeads; ++h)
    #pragma GCC unroll 16
    for (int i = 0; i < kDimVecs; ++i) acc[h][i] = _mm512_setzero_ps();
  AccumulateWeightedRows<kHeads, kDimVecs>(acc, scores, scores_stride, v, kv_stride, n_keys);
  #pragma GCC unroll 16
  for (int h = 0; h < kHeads; ++h)
    #pragma GCC unroll 16
    for (int i = 0; i < kDimVecs; ++i)
      _mm512_storeu_ps(out + h * out_stride + 16 * i, _mm512_mul_ps(acc[h][i], _mm512_set1_ps(inv[h])));
}

template <int kDimVecs>
void GroupFixed(const float* q, int64_t n_heads, const float* k, const float* v, int64_t kv_stride, int64_t n_keys,
                float scale, float* scores, int64_t scores_stride, float* out) {
  constexpr int64_t hd = 16 * kDimVecs;
  float inv[64];
  for (int64_t h = 0; h < n_heads; ++h)
    inv[h] = ScoresRow<kDimVecs>(q + h * hd, k, kv_stride, n_keys, scale, scores + h * scores_stride);
  // Heads per pass: 4 x 4 accumulators for 64-wide heads, fewer for wider ones.
  constexpr int kMax = kDimVecs <= 4 ? 4 : 2;
  int64_t h = 0;
  for (; h + kMax <= n_heads; h += kMax)
    WeightedValues<kMax, kDimVecs>(scores + h * scores_stride, scores_stride, inv + h, v, kv_stride, n_keys,
                                   out + h * hd, hd);
  for (; h < n_heads; ++h)
    WeightedValues<1, kDimVecs>(scores + h * scores_stride, scores_stride, inv + h, v, kv_stride, n_keys,
                                out + h * hd, hd);
}

}  // namespace

bool AttentionGroupAvx512(const float* q, int64_t n_heads, const float* k, const float* v, int64_t head_dim,
                          int64_t kv_stride, int64_t n_keys, float scale, float* scores, int64_t scores_stride,
                          float* out) {
  if (n_heads > 64) return false;
  switch (head_dim) {
    case 64: GroupFixed<4>(q, n_heads, k, v, kv_stride, n_keys, scale, scores, scores_stride, out); return true;
    case 128: GroupFixed<8>(q, n_heads, k, v, kv_stride, n_keys, scale, scores, scores_stride, out); return true;
    case 32: GroupFixed<2>(q, n_heads, k, v, kv_stride, n_keys, scale, scores, scores_stride, out); return true;
    case 96: GroupFixed<6>(q, n_heads, k, v, kv_stride, n_keys, scale, scores, scores_stride, out); return true;
    default: return false;
  }
}

}  // namespace tierlm
