// AVX-512 matmul kernels (F/BW/VL/DQ + VNNI + BF16). Each computes a register tile of
// up to kRows weight rows x kToks tokens, so every weight vector loaded is used kToks
// times and every activation vector kRows times.
//
// Quantized types use integer dot products: unsigned weight codes (nibbles, or Q8_0
// bytes + 128) times signed int8 activations with vpdpbusd, the codes' offset removed by
// starting each dot from -offset * (activation sums), computed once per token.
#include <immintrin.h>

// GCC 12 warns inside its own _mm512_inserti64x4 (the undefined upper half it starts
// from); the warning is spurious.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <cstdlib>
#include <cstring>

#include "kernels/block_types.h"
#include "kernels/kernel_registry.h"

namespace tierlm {
namespace {

constexpr int kRows = 4;  // weight rows per register tile
constexpr int kToks = 4;  // tokens per register tile
constexpr int kPrefetchRows = 4;  // one tile ahead (measured: 4 > 8 > 16 rows)
// Batches at least this large use the repacking panel kernel (PanelGemm).
constexpr int kPanelMinTok = 8;

// Decode streams weights from DRAM once per token: the hardware prefetchers alone leave
// most of the bandwidth unused (4 interleaved row streams), so single-token tiles prefetch
// the same bytes kPrefetchRows rows ahead (the next tile: a tile's rows are contiguous).
template <int kBytes>
inline void PrefetchAhead(const uint8_t* p, int64_t row_bytes) {
  const char* q = reinterpret_cast<const char*>(p + kPrefetchRows * row_bytes);
  #pragma GCC unroll 8
  for (int o = 0; o < kBytes; o += 64) _mm_prefetch(q + o, _MM_HINT_T0);
}

inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---- Q4_0 / Q8_0 against kQ8Pair activations -------------------------------------------
// A step covers blocks (2p, 2p + 1); its 64 codes are ordered
//   b[0..16) b+1[0..16) b[16..32) b+1[16..32)
// so int32 lanes 0-3 and 8-11 belong to block 2p, lanes 4-7 and 12-15 to block 2p + 1.

inline __m512 PairScales(uint16_t d0, uint16_t d1) {
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(d0 | (static_cast<uint32_t>(d1) << 16)));
  const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_zextps128_ps512(f));
}

struct Q4_0Pair {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ4_0);
  static constexpr char kOffset = 8;
  static __m512i Codes(const uint8_t* b, bool has_second) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i q1 = has_second ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + kBlockBytes + 2))
                                  : _mm_setzero_si128();
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
    const __m512i z = _mm512_inserti64x4(_mm512_zextsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
  }
};

struct Q8_0Pair {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ8_0);
  static constexpr char kOffset = static_cast<char>(0x80);  // 128 as an unsigned byte
  static __m512i Codes(const uint8_t* b, bool has_second) {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    const __m256i q1 = has_second ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kBlockBytes + 2))
                                  : _mm256_setzero_si256();
    __m512i z = _mm512_inserti64x4(_mm512_zextsi256_si512(q0), q1, 1);
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_xor_si512(z, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
};

template <typename W, int R, int T>
void TileQ8Pair(const GemmArgs& a, int64_t r0, int64_t t0) {
  const int64_t nb = a.n_in / 32;
  const uint8_t* w[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) w[r] = a.w + (r0 + r) * a.w_row_bytes;
  const int8_t* aq[T];
  const float* ad[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const uint8_t* row = a.act + (t0 + t) * a.act_layout.row_bytes;
    aq[t] = reinterpret_cast<const int8_t*>(row);
    ad[t] = reinterpret_cast<const float*>(row + a.act_layout.d_offset);
  }
  __m512 acc[R][T];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i offset = _mm512_set1_epi8(W::kOffset);
  const __m512i pair_idx = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
  for (int64_t b = 0; b < nb; b += 2) {
    const bool has_second = b + 1 < nb;
    __m512i codes[R];
    __m512 dw[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w[r] + b * W::kBlockBytes;
      if constexpr (T == 1) PrefetchAhead<2 * W::kBlockBytes>(blk, a.w_row_bytes);
      codes[r] = W::Codes(blk, has_second);
      dw[r] = PairScales(LoadU16(blk), has_second ? LoadU16(blk + W::kBlockBytes) : 0);
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i av = _mm512_load_si512(aq[t] + 32 * b);
      const __m512i neg_corr =
          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, av));
      const __m512 da = _mm512_permutexvar_ps(
          pair_idx, _mm512_zextps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(ad[t] + b)))));
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i dot = _mm512_dpbusd_epi32(neg_corr, codes[r], av);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw[r], da), acc[r][t]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[(t0 + t) * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

// ---- Q4_K / Q6_K against kQ8K activations ----------------------------------------------

struct Q8KRowPtrs {
  const int8_t* qs;
  const float* d;
  const int16_t* bsums;
};
inline Q8KRowPtrs Q8KAt(const GemmArgs& a, int64_t t) {
  const uint8_t* row = a.act + t * a.act_layout.row_bytes;
  return {reinterpret_cast<const int8_t*>(row), reinterpret_cast<const float*>(row + a.act_layout.d_offset),
          reinterpret_cast<const int16_t*>(row + a.act_layout.sum_offset)};
}

// int16 lane i of the result = s[base + i / 16] (two values, each over 16 lanes).
inline __m512i Spread2(__m512i s16, int base) {
  const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16(static_cast<short>(base)),
                                       _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20,
                                                                          19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8,
                                                                          7, 6, 5, 4, 3, 2, 1, 0),
                                                         4));
  return _mm512_permutexvar_epi16(idx, s16);
}
// int16 lane i of the result = s[base + i / 8] (four values, each over 8 lanes).
inline __m512i Spread4(__m512i s16, int base) {
  const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16(static_cast<short>(base)),
                                       _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20,
                                                                          19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8,
                                                                          7, 6, 5, 4, 3, 2, 1, 0),
                                                         3));
  return _mm512_permutexvar_epi16(idx, s16);
}

// The 8 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a Q4_K block, as
// UnpackQ4KScaleMin reads them.
inline __m128i UnpackQ4KScalesMins(const uint8_t* scales) {
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  uint32_t u[3];
  std::memcpy(u, scales, 12);
  const uint32_t sc_lo = u[0] & kMask1;
  const uint32_t sc_hi = (u[2] & kMask2) | (((u[0] >> 6) & kMask3) << 4);
  const uint32_t m_lo = u[1] & kMask1;
  const uint32_t m_hi = ((u[2] >> 4) & kMask2) | (((u[1] >> 6) & kMask3) << 4);
  return _mm_set_epi32(static_cast<int>(m_hi), static_cast<int>(m_lo), static_cast<int>(sc_hi),
                       static_cast<int>(sc_lo));
}

template <int R, int T>
void TileQ4K(const GemmArgs& a, int64_t r0, int64_t t0) {
  const int64_t nsb = a.n_in / 256;
  Q8KRowPtrs act[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) act[t] = Q8KAt(a, t0 + t);
  __m512 acc[R][T];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < nsb; ++i) {
    __m512i codes[R][4], scales[R][4];
    __m256i mins[R];
    float d[R], dmin[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const auto* blk = reinterpret_cast<const BlockQ4_K*>(a.w + (r0 + r) * a.w_row_bytes) + i;
      if constexpr (T == 1) PrefetchAhead<sizeof(BlockQ4_K)>(reinterpret_cast<const uint8_t*>(blk), a.w_row_bytes);
      const __m128i sm = UnpackQ4KScalesMins(blk->scales);  // bytes 0-7 scales, 8-15 mins
      const __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_zextsi128_si256(sm));
      mins[r] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
      #pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs + 32 * c));
        codes[r][c] = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_zextsi256_si512(q), _mm256_srli_epi16(q, 4), 1), low4);
        scales[r][c] = Spread2(sc16, 2 * c);
      }
      d[r] = _cvtsh_ss(blk->d);
      dmin[r] = _cvtsh_ss(blk->dmin);
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* q = act[t].qs + 256 * i;
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act[t].bsums + 16 * i));
      const float da = act[t].d[i];
      __m512i sum[R];
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) sum[r] = _mm512_setzero_si512();
      #pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) {
        const __m512i av = _mm512_loadu_si512(q + 64 * c);
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          sum[r] = _mm512_dpwssd_epi32(sum[r], _mm512_maddubs_epi16(codes[r][c], av), scales[r][c]);
      }
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256i m = _mm256_madd_epi16(bsums, mins[r]);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r]), _mm512_set1_ps(d[r] * da), acc[r][t]);
        acc[r][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(m)), _mm512_set1_ps(dmin[r] * da),
                                     acc[r][t]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[(t0 + t) * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int R, int T>
void TileQ6K(const GemmArgs& a, int64_t r0, int64_t t0) {
  const int64_t nsb = a.n_in / 256;
  Q8KRowPtrs act[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) act[t] = Q8KAt(a, t0 + t);
  __m512 acc[R][T];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i low2 = _mm512_set1_epi8(0x03);
  for (int64_t i = 0; i < nsb; ++i) {
    __m512i codes[R][4], scales[R][4];
    __m256i sc32[R];  // 32 * scales as int16, for the offset correction
    float d[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const auto* blk = reinterpret_cast<const BlockQ6_K*>(a.w + (r0 + r) * a.w_row_bytes) + i;
      if constexpr (T == 1) PrefetchAhead<sizeof(BlockQ6_K)>(reinterpret_cast<const uint8_t*>(blk), a.w_row_bytes);
      const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales)));
      sc32[r] = _mm256_slli_epi16(s16, 5);
      const __m512i s512 = _mm512_zextsi256_si512(s16);
      #pragma GCC unroll 8
      for (int h = 0; h < 2; ++h) {
        const __m512i ql = _mm512_loadu_si512(blk->ql + 64 * h);
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qh + 32 * h));
        // Elements 0..63 of the half: bits 0-1 (l < 32) and 2-3 (l >= 32) of qh[l % 32].
        const __m512i h01 = _mm512_inserti64x4(_mm512_zextsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        const __m512i h23 = _mm512_srli_epi16(h01, 4);
        codes[r][2 * h] = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                          _mm512_slli_epi16(_mm512_and_si512(h01, low2), 4));
        codes[r][2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                              _mm512_slli_epi16(_mm512_and_si512(h23, low2), 4));
      }
      #pragma GCC unroll 8
      for (int k = 0; k < 4; ++k) scales[r][k] = Spread4(s512, 4 * k);
      d[r] = _cvtsh_ss(blk->d);
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* q = act[t].qs + 256 * i;
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act[t].bsums + 16 * i));
      const float da = act[t].d[i];
      __m512i sum[R];
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        sum[r] = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(bsums, sc32[r])));
      #pragma GCC unroll 8
      for (int k = 0; k < 4; ++k) {
        const __m512i av = _mm512_loadu_si512(q + 64 * k);
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          sum[r] = _mm512_dpwssd_epi32(sum[r], _mm512_maddubs_epi16(codes[r][k], av), scales[r][k]);
      }
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r]), _mm512_set1_ps(d[r] * da), acc[r][t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[(t0 + t) * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

// ---- F32 / F16 / BF16 ------------------------------------------------------------------

struct LoadF32 {
  static constexpr int kBytes = 4;
  static __m512 Load(const uint8_t* row, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  }
};
struct LoadF16 {
  static constexpr int kBytes = 2;
  static __m512 Load(const uint8_t* row, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + i));
  }
};

template <typename L, int R, int T>
void TileFloat(const GemmArgs& a, int64_t r0, int64_t t0) {
  __m512 acc[R][T];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < a.n_in; i += 16) {
    const __mmask16 m = a.n_in - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (a.n_in - i)) - 1);
    __m512 wv[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if constexpr (T == 1) PrefetchAhead<L::kBytes * 16>(a.w + (r0 + r) * a.w_row_bytes + i * L::kBytes, a.w_row_bytes);
      wv[r] = L::Load(a.w + (r0 + r) * a.w_row_bytes, i, m);
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_load_ps(reinterpret_cast<const float*>(a.act + (t0 + t) * a.act_layout.row_bytes) + i);
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[(t0 + t) * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int R, int T>
void TileBf16(const GemmArgs& a, int64_t r0, int64_t t0) {
  __m512 acc[R][T];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < a.n_in; i += 32) {
    const __mmask32 m = a.n_in - i >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1u << (a.n_in - i)) - 1);
    __m512bh wv[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if constexpr (T == 1) PrefetchAhead<64>(a.w + (r0 + r) * a.w_row_bytes + 2 * i, a.w_row_bytes);
      wv[r] = reinterpret_cast<__m512bh>(
          _mm512_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(a.w + (r0 + r) * a.w_row_bytes) + i));
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = reinterpret_cast<__m512bh>(
          _mm512_load_si512(reinterpret_cast<const uint16_t*>(a.act + (t0 + t) * a.act_layout.row_bytes) + i));
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[(t0 + t) * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

// ---- Prefill: int8 panel GEMM over rows repacked per call -------------------------------
// For a batch of tokens, the thread's rows are taken 32 at a time (two panels of 16) and
// repacked once into a scratch buffer that every token then reuses from L1/L2:
//   per group g of G weights (G = 32, or 16 for Q6_K), per panel:
//     int8 code[G / 4][16 rows][4]  (signed weight codes, 4 consecutive inputs per lane)
//     float scale[16]               (the group's scale: what code * activation is worth)
//     int32 corr[16]                (-128 * sum of the group's codes, see below)
//     float minsc[16]               (Q4_K only: dmin * m of the group)
// so one vpdpbusd multiplies 16 rows by 4 inputs of one token, the token's 4 activation
// bytes broadcast. Activations are unsigned (q + 128, kQ8U / kQ8KU); starting each group's
// dot at corr removes the +128. Each group then costs one convert and one FMA per 16 rows
// and token, against G / 4 dot products.

struct PanelLayout {
  int group;            // weights per group
  int64_t code_bytes;   // group * 16
  int64_t rec_bytes;    // code_bytes + scale + corr (+ minsc)
};

inline PanelLayout MakePanelLayout(int group, bool mins) {
  const int64_t code = group * 16;
  return {group, code, code + 128 + (mins ? 64 : 0)};
}

// Writes row `lane`'s group (codes, scale, min) into a record, codes row-major for now:
// FinishPanel then transposes them to the kernel's order and adds the corrections.
inline void PutGroup(uint8_t* rec, const PanelLayout& L, int lane, const int8_t* codes, float scale, float minsc) {
  std::memcpy(rec + lane * L.group, codes, static_cast<size_t>(L.group));
  std::memcpy(rec + L.code_bytes + 4 * lane, &scale, 4);
  if (L.rec_bytes > L.code_bytes + 128) std::memcpy(rec + L.code_bytes + 128 + 4 * lane, &minsc, 4);
}

// Transposes every record's codes from [16 rows][G] to [G / 4][16 rows][4] and writes
// corr = -128 * (sum of each row's codes).
template <int G>
void FinishPanel(uint8_t* panel, int64_t n_groups, int64_t rec_bytes) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(G));
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t g = 0; g < n_groups; ++g) {
    uint8_t* rec = panel + g * rec_bytes;
    __m512i v[G / 4];
    __m512i sum = _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int k = 0; k < G / 4; ++k) {
      v[k] = _mm512_i32gather_epi32(idx, rec + 4 * k, 1);
      sum = _mm512_dpbusd_epi32(sum, ones, v[k]);
    }
    #pragma GCC unroll 8
    for (int k = 0; k < G / 4; ++k) _mm512_store_si512(rec + 64 * k, v[k]);
    _mm512_store_si512(rec + G * 16 + 64, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
  }
}

template <int kBytes>
inline void PrefetchLines(const uint8_t* p) {
  #pragma GCC unroll 8
  for (int o = 0; o < kBytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + o, _MM_HINT_T0);
}

// Packs one weight row into lane `lane` of a panel (n_groups records of L.rec_bytes).
struct PackQ4_0 {
  static constexpr int kGroup = 32;
  static constexpr bool kMins = false;
  static void Row(const uint8_t* row, int64_t n_in, uint8_t* panel, const PanelLayout& L, int lane, int64_t pf) {
    const auto* b = reinterpret_cast<const BlockQ4_0*>(row);
    for (int64_t g = 0; g < n_in / 32; ++g) {
      _mm_prefetch(reinterpret_cast<const char*>(b + g) + pf, _MM_HINT_T0);
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[g].qs));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, _mm_set1_epi8(15)), _mm_set1_epi8(8));
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(15)), _mm_set1_epi8(8));
      uint8_t* rec = panel + g * L.rec_bytes;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(rec + 32 * lane), _mm256_set_m128i(hi, lo));
      const float d = _cvtsh_ss(b[g].d);
      std::memcpy(rec + L.code_bytes + 4 * lane, &d, 4);
    }
  }
};
struct PackQ8_0 {
  static constexpr int kGroup = 32;
  static constexpr bool kMins = false;
  static void Row(const uint8_t* row, int64_t n_in, uint8_t* panel, const PanelLayout& L, int lane, int64_t pf) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
    for (int64_t g = 0; g < n_in / 32; ++g) {
      _mm_prefetch(reinterpret_cast<const char*>(b + g) + pf, _MM_HINT_T0);
      PutGroup(panel + g * L.rec_bytes, L, lane, b[g].qs, _cvtsh_ss(b[g].d), 0.0f);
    }
  }
};
struct PackQ4_K {
  static constexpr int kGroup = 32;
  static constexpr bool kMins = true;
  static void Row(const uint8_t* row, int64_t n_in, uint8_t* panel, const PanelLayout& L, int lane, int64_t pf) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(row);
    for (int64_t i = 0; i < n_in / 256; ++i) {
      PrefetchLines<sizeof(BlockQ4_K)>(reinterpret_cast<const uint8_t*>(b + i) + pf);
      const float d = _cvtsh_ss(b[i].d), dmin = _cvtsh_ss(b[i].dmin);
      for (int c = 0; c < 4; ++c) {
        alignas(32) int8_t lo[32], hi[32];
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * c));
        _mm256_store_si256(reinterpret_cast<__m256i*>(lo), _mm256_and_si256(q, _mm256_set1_epi8(15)));
        _mm256_store_si256(reinterpret_cast<__m256i*>(hi),
                           _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(15)));
        int sc0, m0, sc1, m1;
        UnpackQ4KScaleMin(b[i].scales, 2 * c, &sc0, &m0);
        UnpackQ4KScaleMin(b[i].scales, 2 * c + 1, &sc1, &m1);
        PutGroup(panel + (8 * i + 2 * c) * L.rec_bytes, L, lane, lo, d * sc0, dmin * m0);
        PutGroup(panel + (8 * i + 2 * c + 1) * L.rec_bytes, L, lane, hi, d * sc1, dmin * m1);
      }
    }
  }
};
struct PackQ6_K {
  static constexpr int kGroup = 16;
  static constexpr bool kMins = false;
  static void Row(const uint8_t* row, int64_t n_in, uint8_t* panel, const PanelLayout& L, int lane, int64_t pf) {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(row);
    for (int64_t i = 0; i < n_in / 256; ++i) {
      PrefetchLines<sizeof(BlockQ6_K)>(reinterpret_cast<const uint8_t*>(b + i) + pf);
      const float d = _cvtsh_ss(b[i].d);
      alignas(64) int8_t c[256];
      for (int h = 0; h < 2; ++h) {
        // Elements 128h + 32k + l (k < 4, l < 32): low 4 bits from ql[64h + l + 32 (k & 1)]
        // (low nibble for k < 2), high 2 bits from qh[32h + l] >> 2k.
        const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].ql + 64 * h));
        const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qh + 32 * h));
        const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
        const __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
        for (int k = 0; k < 4; ++k) {
          const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2);
          const __m256i code = _mm256_sub_epi8(_mm256_or_si256(lows[k], _mm256_slli_epi16(high, 4)), off);
          _mm256_store_si256(reinterpret_cast<__m256i*>(c + 128 * h + 32 * k), code);
        }
      }
      for (int g = 0; g < 16; ++g)
        PutGroup(panel + (16 * i + g) * L.rec_bytes, L, lane, c + 16 * g, d * b[i].scales[g], 0.0f);
    }
  }
};

// Activation pointers of one token for the panel kernel.
struct PanelAct {
  const uint8_t* qs;
  const float* d;     // one per kActBlock inputs
  const float* dsum;  // kQ8KU: d * (sum of the signed codes) per 32 inputs
};

// acc[rv][t] over all groups for RV panels (16 rows each) and T tokens; writes y.
template <int RV, int T, int G, int kActBlock, bool kMins>
void PanelTile(const uint8_t* const* panels, int64_t n_groups, int64_t rec_bytes, const PanelAct* act,
               float* y, int64_t y_stride, int64_t rows_left) {
  constexpr int64_t kCode = G * 16;
  __m512 acc[RV][T];
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[rv][t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint8_t* rec[RV];
    __m512i dot[RV][T];
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv) {
      rec[rv] = panels[rv] + g * rec_bytes;
      const __m512i corr = _mm512_load_si512(rec[rv] + kCode + 64);
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) dot[rv][t] = corr;
    }
    #pragma GCC unroll 8
    for (int k = 0; k < G / 4; ++k) {
      __m512i w[RV];
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv) w[rv] = _mm512_load_si512(rec[rv] + 64 * k);
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        int32_t a4;
        std::memcpy(&a4, act[t].qs + g * G + 4 * k, 4);
        const __m512i av = _mm512_set1_epi32(a4);
        #pragma GCC unroll 8
        for (int rv = 0; rv < RV; ++rv) dot[rv][t] = _mm512_dpbusd_epi32(dot[rv][t], av, w[rv]);
      }
    }
    __m512 scale[RV];
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv) scale[rv] = _mm512_load_ps(reinterpret_cast<const float*>(rec[rv] + kCode));
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 da = _mm512_set1_ps(act[t].d[g * G / kActBlock]);
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv)
        acc[rv][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[rv][t]), _mm512_mul_ps(scale[rv], da), acc[rv][t]);
      if constexpr (kMins) {
        const __m512 ds = _mm512_set1_ps(act[t].dsum[g]);
        #pragma GCC unroll 8
        for (int rv = 0; rv < RV; ++rv)
          acc[rv][t] = _mm512_fnmadd_ps(_mm512_load_ps(reinterpret_cast<const float*>(rec[rv] + kCode + 128)), ds,
                                        acc[rv][t]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv) {
    const int64_t n = rows_left - 16 * rv;
    const __mmask16 m = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * y_stride + 16 * rv, m, acc[rv][t]);
  }
}

constexpr int kPanelToks = 6;  // tokens per register tile: 2 x 6 x 2 accumulators + 2 weights

template <typename P, int kActBlock>
void PanelGemm(const GemmArgs& a) {
  constexpr int G = P::kGroup;
  const PanelLayout L = MakePanelLayout(G, P::kMins);
  const int64_t n_groups = a.n_in / G;
  const int64_t panel_bytes = n_groups * L.rec_bytes;
  struct Scratch {
    uint8_t* p = nullptr;
    int64_t cap = 0;
    ~Scratch() { std::free(p); }
  };
  static thread_local Scratch scratch;
  if (scratch.cap < 2 * panel_bytes) {
    std::free(scratch.p);
    scratch.cap = (2 * panel_bytes + 4095) / 4096 * 4096;
    scratch.p = static_cast<uint8_t*>(std::aligned_alloc(64, static_cast<size_t>(scratch.cap)));
    if (!scratch.p) std::abort();
  }
  const bool q8ku = P::kMins || G == 16;  // K-quants read kQ8KU activations
  using TileFn = void (*)(const uint8_t* const*, int64_t, int64_t, const PanelAct*, float*, int64_t, int64_t);
  static constexpr TileFn kTiles[2][kPanelToks] = {
      {PanelTile<1, 1, G, kActBlock, P::kMins>, PanelTile<1, 2, G, kActBlock, P::kMins>,
       PanelTile<1, 3, G, kActBlock, P::kMins>, PanelTile<1, 4, G, kActBlock, P::kMins>,
       PanelTile<1, 5, G, kActBlock, P::kMins>, PanelTile<1, 6, G, kActBlock, P::kMins>},
      {PanelTile<2, 1, G, kActBlock, P::kMins>, PanelTile<2, 2, G, kActBlock, P::kMins>,
       PanelTile<2, 3, G, kActBlock, P::kMins>, PanelTile<2, 4, G, kActBlock, P::kMins>,
       PanelTile<2, 5, G, kActBlock, P::kMins>, PanelTile<2, 6, G, kActBlock, P::kMins>}};
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += 32) {
    const int64_t rows = a.n_rows - r0 < 32 ? a.n_rows - r0 : 32;
    const int rv_count = rows > 16 ? 2 : 1;
    const uint8_t* panels[2] = {scratch.p, scratch.p + panel_bytes};
    for (int rv = 0; rv < rv_count; ++rv) {
      uint8_t* panel = scratch.p + rv * panel_bytes;
      const int64_t n = rows - 16 * rv < 16 ? rows - 16 * rv : 16;
      if (n < 16) std::memset(panel, 0, static_cast<size_t>(panel_bytes));
      for (int64_t lane = 0; lane < n; ++lane)
        P::Row(a.w + (r0 + 16 * rv + lane) * a.w_row_bytes, a.n_in, panel, L, static_cast<int>(lane),
               32 * a.w_row_bytes);
      FinishPanel<G>(panel, n_groups, L.rec_bytes);
    }
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += kPanelToks) {
      const int nt = static_cast<int>(a.n_tok - t0 < kPanelToks ? a.n_tok - t0 : kPanelToks);
      PanelAct act[kPanelToks];
      for (int t = 0; t < nt; ++t) {
        const uint8_t* row = a.act + (t0 + t) * a.act_layout.row_bytes;
        act[t] = {row, reinterpret_cast<const float*>(row + a.act_layout.d_offset),
                  q8ku ? reinterpret_cast<const float*>(row + a.act_layout.sum_offset) : nullptr};
      }
      kTiles[rv_count - 1][nt - 1](panels, n_groups, L.rec_bytes, act, a.y + t0 * a.y_stride + r0, a.y_stride, rows);
    }
  }
}

// ---- Prefill: BF16 panel GEMM ------------------------------------------------------------
// As PanelGemm, without scales: a panel holds 16 rows as [n_in / 2][16 rows][2 bf16], so
// one vdpbf16ps multiplies 16 rows by one token's pair of inputs (broadcast), and results
// accumulate in f32 lanes, one per row: no horizontal sums, no reloading weights per token.

constexpr int kBf16PanelToks = 8;
// Below this many tokens the 4 x 4 tiles win: the gathers that build panels cost more.
constexpr int kBf16PanelMinTok = 32;

template <int RV, int T>
void Bf16PanelTile(const uint8_t* const* panels, int64_t n_pairs, const uint8_t* const* act, float* y,
                   int64_t y_stride, int64_t rows_left) {
  __m512 acc[RV][T];
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[rv][t] = _mm512_setzero_ps();
  for (int64_t j = 0; j < n_pairs; ++j) {
    __m512bh w[RV];
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv) w[rv] = reinterpret_cast<__m512bh>(_mm512_load_si512(panels[rv] + 64 * j));
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      int32_t x2;
      std::memcpy(&x2, act[t] + 4 * j, 4);
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_set1_epi32(x2));
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv) acc[rv][t] = _mm512_dpbf16_ps(acc[rv][t], w[rv], xv);
    }
  }
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv) {
    const int64_t n = rows_left - 16 * rv;
    const __mmask16 m = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * y_stride + 16 * rv, m, acc[rv][t]);
  }
}

void Bf16PanelGemm(const GemmArgs& a) {
  const int64_t n_pairs = (a.n_in + 1) / 2;
  const int64_t panel_bytes = n_pairs * 64;
  struct Scratch {
    uint8_t* p = nullptr;
    int64_t cap = 0;
    ~Scratch() { std::free(p); }
  };
  static thread_local Scratch scratch;
  if (scratch.cap < 2 * panel_bytes) {
    std::free(scratch.p);
    scratch.cap = (2 * panel_bytes + 4095) / 4096 * 4096;
    scratch.p = static_cast<uint8_t*>(std::aligned_alloc(64, static_cast<size_t>(scratch.cap)));
    if (!scratch.p) std::abort();
  }
  using TileFn = void (*)(const uint8_t* const*, int64_t, const uint8_t* const*, float*, int64_t, int64_t);
  static constexpr TileFn kTiles[2][kBf16PanelToks] = {
      {Bf16PanelTile<1, 1>, Bf16PanelTile<1, 2>, Bf16PanelTile<1, 3>, Bf16PanelTile<1, 4>, Bf16PanelTile<1, 5>,
       Bf16PanelTile<1, 6>, Bf16PanelTile<1, 7>, Bf16PanelTile<1, 8>},
      {Bf16PanelTile<2, 1>, Bf16PanelTile<2, 2>, Bf16PanelTile<2, 3>, Bf16PanelTile<2, 4>, Bf16PanelTile<2, 5>,
       Bf16PanelTile<2, 6>, Bf16PanelTile<2, 7>, Bf16PanelTile<2, 8>}};
  const int64_t full_pairs = a.n_in / 2;
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += 32) {
    const int64_t rows = a.n_rows - r0 < 32 ? a.n_rows - r0 : 32;
    const int rv_count = rows > 16 ? 2 : 1;
    const uint8_t* panels[2] = {scratch.p, scratch.p + panel_bytes};
    for (int rv = 0; rv < rv_count; ++rv) {
      uint8_t* panel = scratch.p + rv * panel_bytes;
      const int64_t n = rows - 16 * rv < 16 ? rows - 16 * rv : 16;
      const __mmask16 m = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
      const uint8_t* base = a.w + (r0 + 16 * rv) * a.w_row_bytes;
      const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(static_cast<int>(a.w_row_bytes)));
      for (int64_t j = 0; j < full_pairs; ++j) {
        if (j % 16 == 0) {  // the 16 row streams, 8 lines ahead
          for (int64_t lane = 0; lane < n; ++lane)
            _mm_prefetch(reinterpret_cast<const char*>(base + lane * a.w_row_bytes + 4 * j + 512), _MM_HINT_T0);
        }
        _mm512_store_si512(panel + 64 * j,
                           _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + 4 * j, 1));
      }
      if (full_pairs < n_pairs) {  // odd n_in: the last input alone, its pair zero
        alignas(64) uint32_t last[16] = {};
        for (int64_t lane = 0; lane < n; ++lane) {
          uint16_t h;
          std::memcpy(&h, base + lane * a.w_row_bytes + 2 * (a.n_in - 1), 2);
          last[lane] = h;
        }
        std::memcpy(panel + 64 * full_pairs, last, 64);
      }
    }
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += kBf16PanelToks) {
      const int nt = static_cast<int>(a.n_tok - t0 < kBf16PanelToks ? a.n_tok - t0 : kBf16PanelToks);
      const uint8_t* act[kBf16PanelToks];
      for (int t = 0; t < nt; ++t) act[t] = a.act + (t0 + t) * a.act_layout.row_bytes;
      kTiles[rv_count - 1][nt - 1](panels, n_pairs, act, a.y + t0 * a.y_stride + r0, a.y_stride, rows);
    }
  }
}

// ---- LQ2 against kQ8LQ2 activations -------------------------------------------------
// The activations are in the codes' order, so the four 2-bit planes of a block's 64 code
// bytes, each times its 64 activation bytes with vpdpbusd, sum group g in int32 lane g:
// one convert and two FMAs per 256 elements apply the group scales (d * sc_g times the
// activation scale) and mins (-dmin * mn_g times d_a * the group's activation sum).

template <int R, int T>
void TileLQ2(const GemmArgs& a, int64_t r0, int64_t t0) {
  const int64_t nb = a.n_in / 256;
  const uint8_t* w[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) w[r] = a.w + (r0 + r) * a.w_row_bytes;
  const int8_t* aq[T];
  const float* ad[T];
  const float* as[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const uint8_t* row = a.act + (t0 + t) * a.act_layout.row_bytes;
    aq[t] = reinterpret_cast<const int8_t*>(row);
    ad[t] = reinterpret_cast<const float*>(row + a.act_layout.d_offset);
    as[t] = reinterpret_cast<const float*>(row + a.act_layout.sum_offset);
  }
  __m512 acc[R][T];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i mask2 = _mm512_set1_epi8(3);
  const __m512i mask4 = _mm512_set1_epi32(15);
  for (int64_t b = 0; b < nb; ++b) {
    __m512i codes[R];
    __m512 scd[R], mnd[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w[r] + b * static_cast<int64_t>(sizeof(BlockLQ2));
      if constexpr (T == 1) PrefetchAhead<128>(blk, a.w_row_bytes);
      codes[r] = _mm512_loadu_si512(blk);
      const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 64)));
      const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(LoadU16(blk + 80) | (static_cast<uint32_t>(LoadU16(blk + 82)) << 16)));
      scd[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(s, mask4)), _mm512_broadcastss_ps(dd));
      mnd[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(s, 4)),
                             _mm512_sub_ps(_mm512_setzero_ps(), _mm512_broadcastss_ps(_mm_movehdup_ps(dd))));
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* qa = aq[t] + 256 * b;
      const __m512i a0 = _mm512_load_si512(qa);
      const __m512i a1 = _mm512_load_si512(qa + 64);
      const __m512i a2 = _mm512_load_si512(qa + 128);
      const __m512i a3 = _mm512_load_si512(qa + 192);
      const __m512 da = _mm512_load_ps(ad[t] + 16 * b);
      const __m512 ds = _mm512_load_ps(as[t] + 16 * b);
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i q = codes[r];
        __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q, mask2), a0);
        dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_srli_epi16(q, 2), mask2), a1);
        dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_srli_epi16(q, 4), mask2), a2);
        dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_srli_epi16(q, 6), mask2), a3);
        acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), da), scd[r], acc[r][t]);
        acc[r][t] = _mm512_fmadd_ps(ds, mnd[r], acc[r][t]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[(t0 + t) * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

// ---- Tiling driver ---------------------------------------------------------------------

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t);

// Tiles [r][t] = Tile<r + 1, t + 1>, so edge tiles run with exact sizes.
template <template <int, int> class Tile>
struct TileTable {
  template <int R, int... Ts>
  static constexpr void FillRow(TileFn (&row)[kToks], std::integer_sequence<int, Ts...>) {
    ((row[Ts] = &Tile<R, Ts + 1>::Run), ...);
  }
  template <int... Rs>
  static constexpr auto Make(std::integer_sequence<int, Rs...>) {
    struct Table {
      TileFn fn[kRows][kToks];
    } table{};
    (FillRow<Rs + 1>(table.fn[Rs], std::make_integer_sequence<int, kToks>{}), ...);
    return table;
  }
};

template <template <int, int> class Tile>
void GemmTiled(const GemmArgs& a) {
  static constexpr auto kTable = TileTable<Tile>::Make(std::make_integer_sequence<int, kRows>{});
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += kRows) {
    const int64_t nr = a.n_rows - r0 < kRows ? a.n_rows - r0 : kRows;
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += kToks) {
      const int64_t nt = a.n_tok - t0 < kToks ? a.n_tok - t0 : kToks;
      kTable.fn[nr - 1][nt - 1](a, r0, t0);
    }
  }
}

template <int R, int T>
struct Q4_0Tile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileQ8Pair<Q4_0Pair, R, T>(a, r0, t0); }
};
template <int R, int T>
struct Q8_0Tile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileQ8Pair<Q8_0Pair, R, T>(a, r0, t0); }
};
template <int R, int T>
struct Q4KTile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileQ4K<R, T>(a, r0, t0); }
};
template <int R, int T>
struct Q6KTile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileQ6K<R, T>(a, r0, t0); }
};
template <int R, int T>
struct LQ2Tile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileLQ2<R, T>(a, r0, t0); }
};
template <int R, int T>
struct F32Tile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileFloat<LoadF32, R, T>(a, r0, t0); }
};
template <int R, int T>
struct F16Tile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileFloat<LoadF16, R, T>(a, r0, t0); }
};
template <int R, int T>
struct Bf16Tile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileBf16<R, T>(a, r0, t0); }
};

}  // namespace

const KernelSet& Avx512Kernels() {
  static const KernelSet kSet = {{
      {ActFormat::kF32, GemmTiled<F32Tile>, kRows},
      {ActFormat::kF32, GemmTiled<F16Tile>, kRows},
      {ActFormat::kBf16, GemmTiled<Bf16Tile>, kRows, ActFormat::kBf16, Bf16PanelGemm, 32, kBf16PanelMinTok},
      {ActFormat::kQ8Pair, GemmTiled<Q8_0Tile>, kRows, ActFormat::kQ8U, PanelGemm<PackQ8_0, 32>, 32, kPanelMinTok},
      {ActFormat::kQ8Pair, GemmTiled<Q4_0Tile>, kRows, ActFormat::kQ8U, PanelGemm<PackQ4_0, 32>, 32, kPanelMinTok},
      {ActFormat::kQ8K, GemmTiled<Q4KTile>, kRows, ActFormat::kQ8KU, PanelGemm<PackQ4_K, 256>, 32, kPanelMinTok},
      {ActFormat::kQ8K, GemmTiled<Q6KTile>, kRows, ActFormat::kQ8KU, PanelGemm<PackQ6_K, 256>, 32, kPanelMinTok},
      {ActFormat::kQ8LQ2, GemmTiled<LQ2Tile>, kRows},
  }};
  return kSet;
}

}  // namespace tierlm
