// AVX-512 pieces of PagedAttention: decoding one head's key or value rows to f32 (f16 and
// bf16 by conversion instructions), and folding up to 16 keys into the running softmax
// states of the heads that share them (scores 16 at a time through one reduction tree,
// a vectorized exp, values weighted by broadcast).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/paged_attention_internal.h"
#include "kernels/simd_math_avx512.h"

namespace tierlm {
namespace {

template <int D>
void Chunk(const float* q, int64_t G, const float* K, const float* V, int64_t n, float scale, float* states,
           int64_t state_stride, float offset) {
  constexpr int64_t hd = 16 * D;
  const __mmask16 live = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
  for (int64_t h = 0; h < G; ++h) {
    const float* qh = q + h * hd;
    float* st = states + h * state_stride;
    __m512 qv[D];
    #pragma GCC unroll 16
    for (int i = 0; i < D; ++i) qv[i] = _mm512_loadu_ps(qh + 16 * i);
    __m512 s;
    if (n == 16) {
      __m512 a[16];
      #pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) {
        const float* kp = K + ((j % 4) * 4 + j / 4) * hd;
        __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kp));
        #pragma GCC unroll 16
        for (int i = 1; i < D; ++i) acc = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(kp + 16 * i), acc);
        a[j] = acc;
      }
      s = ReduceTree16(a);
    } else {
      alignas(64) float sc[16] = {0};
      for (int64_t j = 0; j < n; ++j) {
        const float* kp = K + j * hd;
        __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kp));
        #pragma GCC unroll 16
        for (int i = 1; i < D; ++i) acc = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(kp + 16 * i), acc);
        sc[j] = _mm512_reduce_add_ps(acc);
      }
      s = _mm512_load_ps(sc);
    }
    s = _mm512_mul_ps(s, _mm512_set1_ps(scale));
    if (offset != 0.0f) s = _mm512_add_ps(s, _mm512_set1_ps(offset));
    const float bmax = _mm512_mask_reduce_max_ps(live, s);
    const float m_old = st[0];
    const float m_new = m_old > bmax ? m_old : bmax;
    float* acc = st + 2;
    if (m_new > m_old) {
      const float c = std::exp(m_old - m_new);
      st[1] *= c;
      const __m512 cv = _mm512_set1_ps(c);
      #pragma GCC unroll 16
      for (int i = 0; i < D; ++i) _mm512_storeu_ps(acc + 16 * i, _mm512_mul_ps(_mm512_loadu_ps(acc + 16 * i), cv));
      st[0] = m_new;
    }
    const __m512 p = _mm512_maskz_mov_ps(live, Exp512(_mm512_sub_ps(s, _mm512_set1_ps(m_new))));
    st[1] += _mm512_reduce_add_ps(p);
    alignas(64) float w[16];
    _mm512_store_ps(w, p);
    __m512 av[D];
    #pragma GCC unroll 16
    for (int i = 0; i < D; ++i) av[i] = _mm512_loadu_ps(acc + 16 * i);
    for (int64_t j = 0; j < n; ++j) {
      const __m512 wv = _mm512_set1_ps(w[j]);
      const float* vp = V + j * hd;
      #pragma GCC unroll 16
      for (int i = 0; i < D; ++i) av[i] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(vp + 16 * i), av[i]);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < D; ++i) _mm512_storeu_ps(acc + 16 * i, av[i]);
  }
}

}  // namespace

bool DecodeHeadRowsAvx512(GgmlType type, const uint8_t* rows, int64_t row_bytes, int64_t n, int64_t hd, float* dst) {
  if (hd % 16 != 0) return false;
  switch (type) {
    case GgmlType::kF32:
      for (int64_t p = 0; p < n; ++p) std::memcpy(dst + p * hd, rows + p * row_bytes, static_cast<size_t>(hd) * 4);
      return true;
    case GgmlType::kF16:
      for (int64_t p = 0; p < n; ++p) {
        const auto* src = reinterpret_cast<const __m256i*>(rows + p * row_bytes);
        for (int64_t i = 0; i < hd / 16; ++i)
          _mm512_storeu_ps(dst + p * hd + 16 * i, _mm512_cvtph_ps(_mm256_loadu_si256(src + i)));
      }
      return true;
    case GgmlType::kBF16:
      for (int64_t p = 0; p < n; ++p) {
        const auto* src = reinterpret_cast<const __m256i*>(rows + p * row_bytes);
        for (int64_t i = 0; i < hd / 16; ++i)
          _mm512_storeu_ps(dst + p * hd + 16 * i,
                           _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(src + i)), 16)));
      }
      return true;
    default:
      return false;
  }
}

bool PagedChunkAvx512(const float* q, int64_t G, int64_t hd, float scale, const float* K, const float* V, int64_t n,
                      float* states, int64_t state_stride, float offset) {
  if (n <= 0 || n > 16) return false;
  switch (hd) {
    case 32: Chunk<2>(q, G, K, V, n, scale, states, state_stride, offset); return true;
    case 64: Chunk<4>(q, G, K, V, n, scale, states, state_stride, offset); return true;
    case 96: Chunk<6>(q, G, K, V, n, scale, states, state_stride, offset); return true;
    case 128: Chunk<8>(q, G, K, V, n, scale, states, state_stride, offset); return true;
    case 256: Chunk<16>(q, G, K, V, n, scale, states, state_stride, offset); return true;
    default: return false;
  }
}

}  // namespace tierlm
