// AVX2 + FMA + F16C matmul kernels, for CPUs without AVX-512. One weight row against two
// tokens at a time (one for the last odd token): loads of each weight vector are shared
// by the pair. Integer products use vpmaddubsw (unsigned codes x signed int8), whose
// int16 pair sums cannot saturate for 4- and 6-bit codes; Q8_0 uses |w| x sign(a, w).
#include <immintrin.h>

#include <cstring>

#include "kernels/block_types.h"
#include "kernels/kernel_registry.h"

namespace tierlm {
namespace {

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i SumPairs16(__m256i v) { return _mm256_madd_epi16(v, _mm256_set1_epi16(1)); }

template <int T>
struct Acts {
  const uint8_t* row[T];
  const ActLayout* layout;
  const int8_t* qs(int t) const { return reinterpret_cast<const int8_t*>(row[t]); }
  const float* d(int t) const { return reinterpret_cast<const float*>(row[t] + layout->d_offset); }
  const int16_t* bsums(int t) const { return reinterpret_cast<const int16_t*>(row[t] + layout->sum_offset); }
  const float* f32(int t) const { return reinterpret_cast<const float*>(row[t]); }
};

template <int T>
void DotQ4_0(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) {
  const auto* b = reinterpret_cast<const BlockQ4_0*>(w);
  __m256 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 32; ++i) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs));
    const __m256i codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
    const float dw = _cvtsh_ss(b[i].d);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256i av = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.qs(t) + 32 * i));
      __m256i dot = SumPairs16(_mm256_maddubs_epi16(codes, av));
      dot = _mm256_sub_epi32(dot, SumPairs16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), av)));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * a.d(t)[i]), acc[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = HorizontalSum(acc[t]);
}

template <int T>
void DotQ8_0(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) {
  const auto* b = reinterpret_cast<const BlockQ8_0*>(w);
  __m256 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 32; ++i) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs));
    const __m256i abs_q = _mm256_sign_epi8(q, q);
    const float dw = _cvtsh_ss(b[i].d);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256i av = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.qs(t) + 32 * i));
      const __m256i dot = SumPairs16(_mm256_maddubs_epi16(abs_q, _mm256_sign_epi8(av, q)));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * a.d(t)[i]), acc[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = HorizontalSum(acc[t]);
}

template <int T>
void DotQ4_K(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) {
  const auto* b = reinterpret_cast<const BlockQ4_K*>(w);
  float sum[T] = {};
  for (int64_t i = 0; i < n / 256; ++i) {
    int16_t sc[8], m[8];
    #pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      int s, mm;
      UnpackQ4KScaleMin(b[i].scales, j, &s, &mm);
      sc[j] = static_cast<int16_t>(s);
      m[j] = static_cast<int16_t>(mm);
    }
    const float d = _cvtsh_ss(b[i].d), dmin = _cvtsh_ss(b[i].dmin);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* q = a.qs(t) + 256 * i;
      __m256i acc = _mm256_setzero_si256();
      #pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * c));
        const __m256i lo = _mm256_and_si256(raw, _mm256_set1_epi8(0x0F));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), _mm256_set1_epi8(0x0F));
        const __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 64 * c)));
        const __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 64 * c + 32)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c])));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1])));
      }
      const int16_t* bs = a.bsums(t) + 16 * i;
      int32_t min_sum = 0;
      #pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) min_sum += m[j] * (bs[2 * j] + bs[2 * j + 1]);
      const float da = a.d(t)[i];
      sum[t] += da * (d * HorizontalSum(_mm256_cvtepi32_ps(acc)) - dmin * static_cast<float>(min_sum));
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = sum[t];
}

template <int T>
void DotQ6_K(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) {
  const auto* b = reinterpret_cast<const BlockQ6_K*>(w);
  float sum[T] = {};
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  for (int64_t i = 0; i < n / 256; ++i) {
    // codes[k]: elements 32k .. 32k + 32 of the block as unsigned 6-bit values.
    __m256i codes[8];
    #pragma GCC unroll 8
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qh + 32 * h));
      codes[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
      codes[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4));
      codes[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4));
      codes[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4));
    }
    const float d = _cvtsh_ss(b[i].d);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* q = a.qs(t) + 256 * i;
      __m256i acc = _mm256_setzero_si256();
      #pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m256i p = _mm256_maddubs_epi16(codes[k], _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32 * k)));
        // int16 lanes 0-7 are group 2k, 8-15 group 2k + 1.
        const __m256i s = _mm256_set_m128i(_mm_set1_epi16(b[i].scales[2 * k + 1]), _mm_set1_epi16(b[i].scales[2 * k]));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
      }
      const int16_t* bs = a.bsums(t) + 16 * i;
      int32_t corr = 0;
      for (int g = 0; g < 16; ++g) corr += b[i].scales[g] * bs[g];
      sum[t] += a.d(t)[i] * d * (HorizontalSum(_mm256_cvtepi32_ps(acc)) - 32.0f * static_cast<float>(corr));
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = sum[t];
}

// Floating-point weights: 8 elements at a time, masked scalar tail.
template <typename L, int T>
void DotFloat(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) {
  __m256 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 wv = L::Load8(w, i);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(wv, _mm256_load_ps(a.f32(t) + i), acc[t]);
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    out[t] = HorizontalSum(acc[t]);
    for (int64_t j = i; j < n; ++j) out[t] += L::Load1(w, j) * a.f32(t)[j];
  }
}

struct F32Load {
  static __m256 Load8(const uint8_t* w, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + i); }
  static float Load1(const uint8_t* w, int64_t i) { return reinterpret_cast<const float*>(w)[i]; }
};
struct F16Load {
  static __m256 Load8(const uint8_t* w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(w) + i)));
  }
  static float Load1(const uint8_t* w, int64_t i) { return _cvtsh_ss(reinterpret_cast<const uint16_t*>(w)[i]); }
};
struct Bf16Load {
  static __m256 Load8(const uint8_t* w, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float Load1(const uint8_t* w, int64_t i) {
    const uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(w)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

// Runs Dot<T> for every row over token pairs, then the odd last token alone.
template <template <int> class Dot>
void GemmPairs(const GemmArgs& a) {
  int64_t t = 0;
  for (; t + 2 <= a.n_tok; t += 2) {
    Acts<2> acts{{a.act + t * a.act_layout.row_bytes, a.act + (t + 1) * a.act_layout.row_bytes}, &a.act_layout};
    for (int64_t r = 0; r < a.n_rows; ++r) {
      float out[2];
      Dot<2>::Run(a.w + r * a.w_row_bytes, acts, a.n_in, out);
      a.y[t * a.y_stride + r] = out[0];
      a.y[(t + 1) * a.y_stride + r] = out[1];
    }
  }
  if (t < a.n_tok) {
    Acts<1> acts{{a.act + t * a.act_layout.row_bytes}, &a.act_layout};
    for (int64_t r = 0; r < a.n_rows; ++r) Dot<1>::Run(a.w + r * a.w_row_bytes, acts, a.n_in, a.y + t * a.y_stride + r);
  }
}

template <int T>
struct Q4_0Dot {
  static void Run(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) { DotQ4_0<T>(w, a, n, out); }
};
template <int T>
struct Q8_0Dot {
  static void Run(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) { DotQ8_0<T>(w, a, n, out); }
};
template <int T>
struct Q4KDot {
  static void Run(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) { DotQ4_K<T>(w, a, n, out); }
};
template <int T>
struct Q6KDot {
  static void Run(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) { DotQ6_K<T>(w, a, n, out); }
};
template <int T>
struct F32Dot {
  static void Run(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) { DotFloat<F32Load, T>(w, a, n, out); }
};
template <int T>
struct F16Dot {
  static void Run(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) { DotFloat<F16Load, T>(w, a, n, out); }
};
template <int T>
struct Bf16Dot {
  static void Run(const uint8_t* w, const Acts<T>& a, int64_t n, float* out) { DotFloat<Bf16Load, T>(w, a, n, out); }
};

}  // namespace

const KernelSet& Avx2Kernels() {
  static const KernelSet kSet = {{
      {ActFormat::kF32, GemmPairs<F32Dot>, 1},
      {ActFormat::kF32, GemmPairs<F16Dot>, 1},
      {ActFormat::kF32, GemmPairs<Bf16Dot>, 1},
      {ActFormat::kQ8, GemmPairs<Q8_0Dot>, 1},
      {ActFormat::kQ8, GemmPairs<Q4_0Dot>, 1},
      {ActFormat::kQ8K, GemmPairs<Q4KDot>, 1},
      {ActFormat::kQ8K, GemmPairs<Q6KDot>, 1},
      {ActFormat::kQ8, ScalarGemmLQ2, 1},  // no AVX2 kernel: kLQ2 is for AVX-512 machines
  }};
  return kSet;
}

}  // namespace tierlm
