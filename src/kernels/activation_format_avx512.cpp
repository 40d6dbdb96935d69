// AVX-512 activation conversion: the same rounding as activation_format.cpp's scalar code
// (d = amax / 127, q = nearbyint(x * (127 / amax)), round-half-even), 16 lanes at a time.
// Prefill converts every token's activations once per matmul, so the scalar loop showed up
// in profiles.
#include <immintrin.h>

#include <cstring>

#include "kernels/activation_format.h"

namespace tierlm {
namespace {

inline __m512 Abs(__m512 v) { return _mm512_abs_ps(v); }

// Quantizes `kVecs` vectors of 16 floats as one block; returns the int8 codes' sum.
template <int kVecs>
inline int QuantizeBlock(const float* x, int8_t* qs, float* d_out, bool flip) {
  __m512 v[kVecs];
  __m512 amax = _mm512_setzero_ps();
  #pragma GCC unroll 16
  for (int k = 0; k < kVecs; ++k) {
    v[k] = _mm512_loadu_ps(x + 16 * k);
    amax = _mm512_max_ps(amax, Abs(v[k]));
  }
  const float m = _mm512_reduce_max_ps(amax);
  const float scale = m / 127.0f;
  const float inv = scale != 0.0f ? 127.0f / m : 0.0f;
  *d_out = scale;
  const __m512 vinv = _mm512_set1_ps(inv);
  __m512i sum = _mm512_setzero_si512();
  const __m128i flip_bits = _mm_set1_epi8(flip ? static_cast<char>(0x80) : 0);
  #pragma GCC unroll 16
  for (int k = 0; k < kVecs; ++k) {
    const __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v[k], vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    sum = _mm512_add_epi32(sum, q);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16 * k), _mm_xor_si128(_mm512_cvtsepi32_epi8(q), flip_bits));
  }
  return _mm512_reduce_add_epi32(sum);
}

}  // namespace

bool ConvertActivationRowAvx512(ActFormat format, const float* x, int64_t n_in, uint8_t* dst) {
  const ActLayout layout = GetActLayout(format, n_in);
  switch (format) {
    case ActFormat::kQ8:
    case ActFormat::kQ8U:
    case ActFormat::kQ8Pair: {
      std::memset(dst + n_in, 0, static_cast<size_t>(layout.row_bytes - n_in));  // qs [0, n_in) all written
      auto* qs = reinterpret_cast<int8_t*>(dst);
      auto* d = reinterpret_cast<float*>(dst + layout.d_offset);
      auto* sum = reinterpret_cast<int32_t*>(dst + layout.sum_offset);
      const bool flip = format == ActFormat::kQ8U;
      for (int64_t b = 0; b < n_in / 32; ++b) {
        const int s = QuantizeBlock<2>(x + 32 * b, qs + 32 * b, d + b, flip);
        if (!flip) sum[b] = s;
      }
      if (format == ActFormat::kQ8Pair) {
        for (int64_t p = 0; p < layout.d_offset; p += 64) {
          // b[0..16) b+1[0..16) b[16..32) b+1[16..32)
          const __m512i v = _mm512_loadu_si512(qs + p);
          _mm512_storeu_si512(qs + p, _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)));
        }
      }
      return true;
    }
    case ActFormat::kQ8K:
    case ActFormat::kQ8KU:
    case ActFormat::kQ8KS: {
      std::memset(dst + n_in, 0, static_cast<size_t>(layout.row_bytes - n_in));  // qs [0, n_in) all written
      auto* qs = reinterpret_cast<int8_t*>(dst);
      auto* d = reinterpret_cast<float*>(dst + layout.d_offset);
      const bool flip = format == ActFormat::kQ8KU;
      const bool sum32 = format != ActFormat::kQ8K;  // else 16-element bsums
      for (int64_t b = 0; b < n_in / 256; ++b) {
        QuantizeBlock<16>(x + 256 * b, qs + 256 * b, d + b, flip);
        // Group sums from the signed codes.
        for (int g = 0; g < 8; ++g) {
          __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 256 * b + 32 * g));
          if (flip) q = _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80)));
          const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);  // pairs
          if (sum32) {
            const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
            const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            const __m128i h2 = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
            const __m128i h3 = _mm_add_epi32(h2, _mm_shuffle_epi32(h2, _MM_SHUFFLE(2, 3, 0, 1)));
            reinterpret_cast<int16_t*>(dst + layout.sum_offset)[8 * b + g] =
                static_cast<int16_t>(_mm_cvtsi128_si32(h3));
          } else {
            // Two 16-element sums: lanes 0-7 of s16 hold pairs of elements 0..15 within each
            // 128-bit half, i.e. half 0 covers elements 0..15, half 1 elements 16..31.
            const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));  // 4 per half
            const __m256i a = _mm256_hadd_epi32(s32, s32);
            const __m256i c = _mm256_hadd_epi32(a, a);
            auto* bsums = reinterpret_cast<int16_t*>(dst + layout.sum_offset);
            bsums[16 * b + 2 * g] = static_cast<int16_t>(_mm256_extract_epi32(c, 0));
            bsums[16 * b + 2 * g + 1] = static_cast<int16_t>(_mm256_extract_epi32(c, 4));
          }
        }
      }
      return true;
    }
    default:
      return false;
  }
}

}  // namespace tierlm
