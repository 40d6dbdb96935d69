// Vector math for the AVX-512 kernels. Include only from *_avx512.cpp files (compiled
// with the AVX-512 flags).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/exp_floor.h"

namespace tierlm {

// exp(x) for x <= 0 (and moderately positive x): 2^n * p(r), x = n ln2 + r, |r| <= ln2/2,
// p a degree-6 polynomial; about 2 ulp. x below kExpFloor (and NaN) gives exp(kExpFloor),
// where 2^n * p(r) is still a normal float for every r (below about -87.3 it would not be),
// so the result is never subnormal (kernels/exp_floor.h).
inline __m512 Exp512(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
  const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  x = _mm512_max_ps(x, _mm512_set1_ps(kExpFloor));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Lane L of the result = horizontal sum of a[(L % 4) * 4 + L / 4].
inline __m512 ReduceTree16(const __m512 (&a)[16]) {
  __m512 b[8], c[4], e[2];
  #pragma GCC unroll 16
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  #pragma GCC unroll 16
  for (int j = 0; j < 4; ++j)
    c[j] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  #pragma GCC unroll 16
  for (int m = 0; m < 2; ++m)
    e[m] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * m], c[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(c[2 * m], c[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_ps(e[0], e[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// acc[h] += sum_j w[h * w_stride + j] * v_j for H heads sharing the value rows v_j (row j at
// v + j * v_stride, D vectors each), j = 0..n-1 in order: one load of each row serves every
// head, and each head's FMAs run in key order whatever H is. Row j also prefetches pf[j]
// while j < n_pf (the next fold step's cache lines, spread over the loop).
template <int H, int D>
inline void AccumulateWeightedRows(__m512 (&acc)[H][D], const float* w, int64_t w_stride, const float* v,
                                   int64_t v_stride, int64_t n, const char* const* pf = nullptr, int64_t n_pf = 0) {
  for (int64_t j = 0; j < n; ++j) {
    if (j < n_pf) _mm_prefetch(pf[j], _MM_HINT_T0);
    const float* vp = v + j * v_stride;
    __m512 vv[D];
    #pragma GCC unroll 16
    for (int i = 0; i < D; ++i) vv[i] = _mm512_loadu_ps(vp + 16 * i);
    #pragma GCC unroll 16
    for (int h = 0; h < H; ++h) {
      const __m512 wv = _mm512_set1_ps(w[h * w_stride + j]);
      #pragma GCC unroll 16
      for (int i = 0; i < D; ++i) acc[h][i] = _mm512_fmadd_ps(wv, vv[i], acc[h][i]);
    }
  }
}

}  // namespace tierlm
