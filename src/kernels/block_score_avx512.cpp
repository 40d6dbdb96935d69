#include <immintrin.h>

#include <cmath>

#include "kernels/block_score.h"

namespace tierlm {
namespace {

// Lanes 0..15 folded as the portable loop does: halves added pairwise.
inline float Fold16(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  const __m128 d = _mm_add_ss(c, _mm_shuffle_ps(c, c, 1));
  return _mm_cvtss_f32(d);
}

}  // namespace

bool QuestBlockScoresAvx512(const float* q, int64_t group, int64_t hd, const uint16_t* base, int64_t stride,
                            const int32_t* ids, int64_t n, float* scores) {
  if (hd % 16 != 0) return false;
  auto load = [](const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); };
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* mn = base + static_cast<int64_t>(ids[j]) * stride;
    const uint16_t* mx = mn + hd;
    if (j + 2 < n) {
      const uint16_t* next = base + static_cast<int64_t>(ids[j + 2]) * stride;
      for (int64_t i = 0; i < 2 * hd; i += 32) _mm_prefetch(reinterpret_cast<const char*>(next + i), _MM_HINT_T0);
    }
    float best = -INFINITY;
    for (int64_t h = 0; h < group; ++h) {
      const float* qh = q + h * hd;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t i = 0; i < hd; i += 16) {
        const __m512 qv = _mm512_loadu_ps(qh + i);
        acc = _mm512_add_ps(acc, _mm512_max_ps(_mm512_mul_ps(qv, load(mn + i)), _mm512_mul_ps(qv, load(mx + i))));
      }
      best = std::fmax(best, Fold16(acc));
    }
    scores[j] = best;
  }
  return true;
}

}  // namespace tierlm
