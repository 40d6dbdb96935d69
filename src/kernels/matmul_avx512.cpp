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

#include <cstring>

#include "kernels/block_types.h"
#include "kernels/kernel_registry.h"

namespace tierlm {
namespace {

constexpr int kRows = 4;  // weight rows per register tile
constexpr int kToks = 4;  // tokens per register tile

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
      alignas(64) int16_t sc[32] = {}, m2[16];
      #pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        int s, m;
        UnpackQ4KScaleMin(blk->scales, j, &s, &m);
        sc[j] = static_cast<int16_t>(s);
        m2[2 * j] = m2[2 * j + 1] = static_cast<int16_t>(m);
      }
      const __m512i sc16 = _mm512_load_si512(sc);
      mins[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m2));
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
  static __m512 Load(const uint8_t* row, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  }
};
struct LoadF16 {
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
    for (int r = 0; r < R; ++r) wv[r] = L::Load(a.w + (r0 + r) * a.w_row_bytes, i, m);
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
    for (int r = 0; r < R; ++r)
      wv[r] = reinterpret_cast<__m512bh>(
          _mm512_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(a.w + (r0 + r) * a.w_row_bytes) + i));
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
      {ActFormat::kBf16, GemmTiled<Bf16Tile>, kRows},
      {ActFormat::kQ8Pair, GemmTiled<Q8_0Tile>, kRows},
      {ActFormat::kQ8Pair, GemmTiled<Q4_0Tile>, kRows},
      {ActFormat::kQ8K, GemmTiled<Q4KTile>, kRows},
      {ActFormat::kQ8K, GemmTiled<Q6KTile>, kRows},
  }};
  return kSet;
}

}  // namespace tierlm
