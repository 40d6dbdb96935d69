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
#include "kernels/panel_pack_avx512.h"

namespace tierlm {
namespace {

constexpr int kRows = 4;  // weight rows per register tile
constexpr int kToks = 4;  // tokens per register tile
constexpr int kPrefetchRows = 4;  // one tile ahead (measured: 4 > 8 > 16 rows)
// Batches at least this large use the repacking panel kernel (PanelGemm). Below, Q4_0 and
// Q8_0 use RowsQ8Gemm, which reads each weight block once for all the call's tokens; the
// K-quants use their 4 x 4 tiles. Measured on an Ice Lake Xeon, one thread, 2048 x 5632
// Q4_0 (matmul_bench BM_Matmul/Q4_0/N/1, medians of 5, 3 rounds): RowsQ8Gemm / panel
// 0.59 / 0.84-0.99 ms at 2 tokens, 0.74-0.81 / 0.82-0.98 at 4, even at 8, 2.2-2.3 /
// 1.43-1.65 at 16, 8.0-8.4 / 4.1-4.5 at 64. (The threshold was 128 before the panels were
// packed in registers.) The K-quants' tiles against their panel, same bench: Q4_K 0.69 /
// 1.6-2.0 ms at 2 tokens, 1.0 / 1.6-1.7 at 4, even at 8 (1.8-1.9 / 1.8-2.6); Q6_K alike.
// Q8_0 (twice the bytes to transpose per block) crosses later: RowsQ8Gemm / panel 1.68-1.83
// / 1.77-2.13 ms at 8 tokens, 2.58-2.71 / 2.39-2.82 at 16, 9.5-9.6 / 5.4-7.4 at 64.
// Both compute the canonical order: the choice never changes a bit.
// Q4_0 and Q8_0 batches of kQ*PanelMinTok..kUPanelMaxTok tokens (a step of many sequences
// decoding together, short prompts) use the unsigned-weight panels (UPanelGemm in
// upanel_gemm_avx512.cpp), which
// pack in a fraction of the instructions and fetch the next rows while they multiply;
// larger batches keep PanelGemm, whose kernel is a few per cent faster once the packing is
// amortized. The model's seven matrices of a TinyLlama layer x 22, weights from DRAM, 2
// threads, ms per pass (one process, the kernels alternating; Ice Lake Xeon):
//   Q4_0  8 tokens: RowsQ8Gemm 60.7, old panel 64.8, U-panel 51.1-53.8; 16: old panel 73,
//         U-panel 60-61; 64: 294 / 282; 128: 367-393 / 378-405; 512: 1410-2040 / 1494-2139
//         (U-panel 1-6% slower); 2 and 4 tokens: RowsQ8Gemm 31 / 38, U-panel 45 / 46.
//   Q8_0  8 tokens: RowsQ8Gemm 73.2, U-panel 80.4; 10: 88.0 / 82.3; 12: 88.5 / 80.7.
// Q6_K against a 32000 x 2048 matrix from DRAM (a vocabulary projection; 2 threads, the
// two alternating in one process), tiles / panel: 6.3 / 7.6 ms at 8 tokens, 7.9 / 8.4 at
// 10, 8.7 / 8.4 at 12, 10.9 / 8.9 at 16; Q4_K's panel wins from 8 (6.4 / 5.7).
constexpr int kPanelMinTok = 8;
constexpr int kQ6_KPanelMinTok = 11;
constexpr int kQ4_0PanelMinTok = 8;
constexpr int kQ8_0PanelMinTok = 10;
constexpr int kUPanelMaxTok = 64;

// Decode streams weights from DRAM once per token: the hardware prefetchers alone leave
// most of the bandwidth unused (4 interleaved row streams), so single-token tiles prefetch
// the same bytes kPrefetchRows rows ahead (the next tile: a tile's rows are contiguous),
// into L2 (more misses in flight than L1 allows: Q4_K_M decode +2-4% on Sapphire Rapids).
template <int kBytes>
inline void PrefetchAhead(const uint8_t* p, int64_t row_bytes) {
  const char* q = reinterpret_cast<const char*>(p + kPrefetchRows * row_bytes);
  #pragma GCC unroll 8
  for (int o = 0; o < kBytes; o += 64) _mm_prefetch(q + o, _MM_HINT_T1);
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

// The canonical order of a Q4_0 / Q8_0 dot product, shared with the prefill panel kernel
// (PanelTile) so that a token's result never depends on its batch: per block b in order,
// the exact integer dot I_b of the signed weight and activation codes, then
//   acc = fma(float(I_b), d_w[b] * d_a[b], acc)       (from acc = 0; the result is acc)
// Integer sums are exact in any order, so each kernel sums a block's codes as suits it;
// only this one f32 chain per (row, token) is fixed.


// ---- Q4_0 / Q8_0 against kQ8Pair activations, 16 rows in lanes ---------------------------
// The small-batch kernel (2 tokens up to the panel threshold): 16 weight rows at a time,
// each block's codes transposed in registers so that int32 lane l holds 4 codes of one row
// (rows 4i + g in lane 4g + i), then for every token one vpdpbusd per 4 inputs, the token's
// 4 activation bytes broadcast:
// the block's integer dot lands whole in the row's lane (no horizontal sums), and the f32
// chain of the canonical order (see "The canonical order of a Q4_0 / Q8_0 dot product") runs for 16 rows at once. Each weight block
// is read once for all the call's tokens.

struct Q4_0Rows {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ4_0);
  static constexpr int kOffset = 8;
  // u[k]: unsigned codes of inputs 4k..4k+3 of the block at blk + roff[r] (k < 8).
  static void Codes(const uint8_t* blk, const int64_t* roff, __m512i (&u)[8]) {
    __m512i v[4];
    Load16x16(blk + 2, roff, v);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      u[j] = _mm512_and_si512(v[j], low4);
      u[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v[j], 4), low4);
    }
  }
};

struct Q8_0Rows {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ8_0);
  static constexpr int kOffset = 128;
  static void Codes(const uint8_t* blk, const int64_t* roff, __m512i (&u)[8]) {
    __m512i v[4], w[4];
    Load16x16(blk + 2, roff, v);
    Load16x16(blk + 18, roff, w);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      u[j] = _mm512_xor_si512(v[j], flip);
      u[4 + j] = _mm512_xor_si512(w[j], flip);
    }
  }
};


constexpr int kRowsMaxToks = 64;  // tokens per call at most (Matmul's kTokBlock)

template <typename W>
void RowsQ8Gemm(const GemmArgs& a) {
  const int64_t nb = a.n_in / 32;
  const int64_t n_tok = a.n_tok;
  if (n_tok > kRowsMaxToks) std::abort();
  alignas(64) float acc[kRowsMaxToks][16];
  const __m512i row_of_lane = RowOfLane();
  const uint8_t* act = a.act;  // kQ8Pair
  const int64_t act_rb = a.act_layout.row_bytes, d_off = a.act_layout.d_offset, s_off = a.act_layout.sum_offset;
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += 16) {
    const int64_t nr = a.n_rows - r0 < 16 ? a.n_rows - r0 : 16;
    // Rows past the end repeat the last row (computed, never stored).
    int64_t roff[16];
    for (int r = 0; r < 16; ++r) roff[r] = (r < nr ? r : nr - 1) * a.w_row_bytes;
    int64_t loff[16];  // lane l's row offset (RowOfLane)
    for (int l = 0; l < 16; ++l) loff[l] = roff[4 * (l % 4) + l / 4];
    for (int64_t t = 0; t < n_tok; ++t) _mm512_store_ps(acc[t], _mm512_setzero_ps());
    const uint8_t* base = a.w + r0 * a.w_row_bytes;
    // Each row's bytes are also asked into L2 for the next 16 rows: the 512 bytes ahead
    // within a row come too late for rows of a few KiB (the start of every row group
    // missed), and 16 row streams are more than the hardware prefetchers follow. 16 tokens
    // against a 2048 x 5632 matrix from DRAM on 2 threads: 865 -> 617 us (matmul_bench
    // BM_GemvDram/Q4_0/2/16).
    const int64_t next_group = 16 * a.w_row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = base + b * W::kBlockBytes;
      if (b % 2 == 0) {
        #pragma GCC unroll 16
        for (int r = 0; r < 16; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(blk + roff[r]) + 512, _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(blk + roff[r]) + next_group, _MM_HINT_T1);
        }
      }
      __m512i u[8];
      W::Codes(blk, roff, u);
      const __m512 dw = LoadScales16(blk, loff);
      // kQ8Pair: block b's inputs 0..15 at 64 (b / 2) + 16 (b % 2), inputs 16..31 32 bytes on.
      const uint8_t* at = act + 64 * (b / 2) + 16 * (b % 2);
      const uint8_t* as = act + s_off + 4 * b;
      const uint8_t* ad = act + d_off + 4 * b;
      for (int64_t t = 0; t < n_tok; ++t, at += act_rb, as += act_rb, ad += act_rb) {
        __m512i d0 = _mm512_set1_epi32(-W::kOffset * LoadI32(as));
        __m512i d1 = _mm512_setzero_si512();
        #pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          d0 = _mm512_dpbusd_epi32(d0, u[k], _mm512_set1_epi32(LoadI32(at + 4 * k)));
          d1 = _mm512_dpbusd_epi32(d1, u[4 + k], _mm512_set1_epi32(LoadI32(at + 32 + 4 * k)));
        }
        float da;
        std::memcpy(&da, ad, 4);
        const __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1));
        _mm512_store_ps(acc[t], _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(da)), _mm512_load_ps(acc[t])));
      }
    }
    const __mmask16 m = nr >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << nr) - 1);
    for (int64_t t = 0; t < n_tok; ++t)
      _mm512_mask_storeu_ps(a.y + t * a.y_stride + r0, m, _mm512_permutexvar_ps(row_of_lane, _mm512_load_ps(acc[t])));
  }
}

// ---- Q4_0 / Q8_0 decode: one token, 16 rows per step ------------------------------------
// 4-row tiles (the former kernel) spent most of their instructions on per-row overhead
// (scalar scale loads, 4 rows' dots reduced to 4 of 16 lanes, f32 math on 4 lanes): 24% slower
// alone, 11% in TinyLlama Q4_0 decode on 2 threads. Here 16 rows share each step:
// every row's block-pair dot (one vpdpbusd per row and pair of blocks, codes from W::Codes), then one
// reduction tree for all 16 (ReduceRows16) that leaves block 2p's dots in one vector and
// 2p + 1's in another, row r in lane r; the scales come by two gathers; the canonical f32
// chain (see "The canonical order of a Q4_0 / Q8_0 dot product") then runs for 16 rows in full vectors.

// For 4 vectors whose 128-bit groups hold 4 partial sums each: lane 4g + k of the result is
// the sum of group g of v[k].
inline __m512i SumGroups4(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

// d[r]: row r's block-pair dot (block 2p in lanes 0-3 and 8-11, 2p + 1 in 4-7 and 12-15).
// Returns block 2p's 16 dots in *even (row r in lane r) and 2p + 1's in *odd.
inline void ReduceRows16(const __m512i (&d)[16], __m512i* even, __m512i* odd) {
  // v[k] = [row 2k even | row 2k odd | row 2k+1 even | row 2k+1 odd], 4 partials each.
  __m512i v[8];
  #pragma GCC unroll 8
  for (int k = 0; k < 8; ++k)
    v[k] = _mm512_add_epi32(_mm512_shuffle_i64x2(d[2 * k], d[2 * k + 1], 0x44),
                            _mm512_shuffle_i64x2(d[2 * k], d[2 * k + 1], 0xEE));
  // Lane 4g + k of lo: group g of v[k] (k < 4); of hi: of v[4 + k]. Group g is row
  // 2k + g / 2, parity g % 2.
  const __m512i lo = SumGroups4(v[0], v[1], v[2], v[3]);
  const __m512i hi = SumGroups4(v[4], v[5], v[6], v[7]);
  // Row r = 2k + h (k < 4 in lo, k >= 4 in hi at k - 4): even at lane 4 (2h) + k, odd at 4 (2h + 1) + k.
  alignas(64) static constexpr int32_t kEven[16] = {0, 8, 1, 9, 2, 10, 3, 11, 16, 24, 17, 25, 18, 26, 19, 27};
  alignas(64) static constexpr int32_t kOdd[16] = {4, 12, 5, 13, 6, 14, 7, 15, 20, 28, 21, 29, 22, 30, 23, 31};
  *even = _mm512_permutex2var_epi32(lo, _mm512_load_si512(kEven), hi);
  *odd = _mm512_permutex2var_epi32(lo, _mm512_load_si512(kOdd), hi);
}

template <typename W>
void GemvQ8Pair16(const GemmArgs& a) {
  const int64_t nb = a.n_in / 32;
  // Each row's bytes are prefetched into L2 from the row 16 on (the next step's): measured
  // faster than into L1 (which holds fewer misses in flight), than 8 or 32 rows ahead, and
  // than the next step's region as one sequential stream.
  const int64_t pf = 16 * a.w_row_bytes;
  const int8_t* aq = reinterpret_cast<const int8_t*>(a.act);
  const float* ad = reinterpret_cast<const float*>(a.act + a.act_layout.d_offset);
  const __m512i offset = _mm512_set1_epi8(W::kOffset);
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += 16) {
    const int64_t nr = a.n_rows - r0 < 16 ? a.n_rows - r0 : 16;
    // Rows past the end repeat the last row (computed, never stored).
    const uint8_t* w[16];
    alignas(64) int32_t off[16];
    for (int r = 0; r < 16; ++r) {
      const int64_t rr = r < nr ? r : nr - 1;
      w[r] = a.w + (r0 + rr) * a.w_row_bytes;
      off[r] = static_cast<int32_t>(rr * a.w_row_bytes);
    }
    const __m512i roff = _mm512_load_si512(off);
    const uint8_t* base = a.w + r0 * a.w_row_bytes;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
      const bool has_second = b + 1 < nb;
      const __m512i av = _mm512_load_si512(aq + 32 * b);
      const __m512i neg_corr =
          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, av));
      __m512i d[16];
      #pragma GCC unroll 16
      for (int r = 0; r < 16; ++r) {
        const uint8_t* blk = w[r] + b * W::kBlockBytes;
        #pragma GCC unroll 2
        for (int64_t o = 0; o < 2 * W::kBlockBytes; o += 64)  // every line of the pair's bytes
          _mm_prefetch(reinterpret_cast<const char*>(blk + pf + o), _MM_HINT_T1);
        d[r] = _mm512_dpbusd_epi32(neg_corr, W::Codes(blk, has_second), av);
      }
      __m512i even, odd;
      ReduceRows16(d, &even, &odd);
      const uint8_t* sb = base + b * W::kBlockBytes;
      const __m512 dw_even = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(roff, sb, 1)));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(even), _mm512_mul_ps(dw_even, _mm512_set1_ps(ad[b])), acc);
      if (has_second) {
        const __m512 dw_odd =
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(roff, sb + W::kBlockBytes, 1)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(odd), _mm512_mul_ps(dw_odd, _mm512_set1_ps(ad[b + 1])), acc);
      }
    }
    const __mmask16 m = nr >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << nr) - 1);
    _mm512_mask_storeu_ps(a.y + r0, m, acc);
  }
}

// One token: GemvQ8Pair16 (16 rows per step, each row read once); more: RowsQ8Gemm.
// Both compute the canonical order, so the choice never changes a result.
template <typename W, typename P>
void Q8Gemm(const GemmArgs& a);

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

// The canonical order of a Q4_K / Q6_K dot product, shared with the prefill panel kernel
// (PanelTileK): per 256-element block i in order, the exact integer sums
//   A_i = sum over groups g of scale_g * (integer dot of the group's codes and activations)
//   M_i = sum over sub-blocks j of min_j * (sum of the sub-block's activation codes)  [Q4_K]
// (Q6_K's codes counted as q - 32), then
//   acc = fma(float(A_i), d_i * d_a[i], acc);  Q4_K: acc = fnmadd(float(M_i), dmin_i * d_a[i], acc)
// from acc = 0. A tile reduces its rows' integer vectors exactly (any order) to one lane per
// row, r in lane r of a 128-bit accumulator per token.

// Lane r (< 4) of the result = the sum of v[r]'s 16 int32 lanes.
inline __m128i HSum4(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
  const __m512i a = _mm512_add_epi32(_mm512_shuffle_i64x2(v0, v1, 0x44), _mm512_shuffle_i64x2(v0, v1, 0xEE));
  const __m512i b = _mm512_add_epi32(_mm512_shuffle_i64x2(v2, v3, 0x44), _mm512_shuffle_i64x2(v2, v3, 0xEE));
  const __m512i c = _mm512_add_epi32(_mm512_shuffle_i64x2(a, b, 0x88), _mm512_shuffle_i64x2(a, b, 0xDD));
  // c: 128-bit group r holds v[r]'s partial sums.
  const __m512i d = _mm512_add_epi32(c, _mm512_shuffle_epi32(c, _MM_PERM_BADC));
  const __m512i e = _mm512_add_epi32(d, _mm512_shuffle_epi32(d, _MM_PERM_CDAB));
  return _mm512_castsi512_si128(
      _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), e));
}

template <int R>
inline __m128i HSumRows(const __m512i* v) {
  const __m512i z = _mm512_setzero_si512();
  return HSum4(v[0], R > 1 ? v[1] : z, R > 2 ? v[2] : z, R > 3 ? v[3] : z);
}

template <int R>
inline void StoreRows(float* y, __m128 v) {
  _mm_mask_storeu_ps(y, static_cast<__mmask8>((1u << R) - 1), v);
}

template <int R, int T>
void TileQ4K(const GemmArgs& a, int64_t r0, int64_t t0) {
  const int64_t nsb = a.n_in / 256;
  Q8KRowPtrs act[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) act[t] = Q8KAt(a, t0 + t);
  __m128 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < nsb; ++i) {
    __m512i codes[R][4], scales[R][4];
    __m256i mins[R];
    __m128i hd = _mm_setzero_si128(), hdmin = _mm_setzero_si128();  // f16 d, dmin of rows 0..3
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
      hd = _mm_insert_epi16(hd, blk->d, r);
      hdmin = _mm_insert_epi16(hdmin, blk->dmin, r);
    }
    // Built in registers (scalars stored and reloaded as a vector stall on forwarding).
    const __m128 vd = _mm_cvtph_ps(hd);
    const __m128 vdmin = _mm_cvtph_ps(hdmin);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* q = act[t].qs + 256 * i;
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act[t].bsums + 16 * i));
      const float da = act[t].d[i];
      __m512i sum[R], msum[R];
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
      for (int r = 0; r < R; ++r) msum[r] = _mm512_zextsi256_si512(_mm256_madd_epi16(bsums, mins[r]));
      const __m128 va = _mm_set1_ps(da);
      acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(HSumRows<R>(sum)), _mm_mul_ps(vd, va), acc[t]);
      acc[t] = _mm_fnmadd_ps(_mm_cvtepi32_ps(HSumRows<R>(msum)), _mm_mul_ps(vdmin, va), acc[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) StoreRows<R>(a.y + (t0 + t) * a.y_stride + r0, acc[t]);
}

template <int R, int T>
void TileQ6K(const GemmArgs& a, int64_t r0, int64_t t0) {
  const int64_t nsb = a.n_in / 256;
  Q8KRowPtrs act[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) act[t] = Q8KAt(a, t0 + t);
  __m128 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i low2 = _mm512_set1_epi8(0x03);
  for (int64_t i = 0; i < nsb; ++i) {
    __m512i codes[R][4], scales[R][4];
    __m256i sc32[R];  // 32 * scales as int16, for the offset correction
    __m128i hd = _mm_setzero_si128();  // f16 d of rows 0..3
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
      hd = _mm_insert_epi16(hd, blk->d, r);
    }
    const __m128 vd = _mm_cvtph_ps(hd);
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
      acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(HSumRows<R>(sum)), _mm_mul_ps(vd, _mm_set1_ps(da)), acc[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) StoreRows<R>(a.y + (t0 + t) * a.y_stride + r0, acc[t]);
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

// ---- BF16 ------------------------------------------------------------------------------
// The canonical order of a BF16 dot product, shared with the prefill panel kernel
// (Bf16PanelTile): 16 vdpbf16ps chains per (row, token), chain j over the input pairs
// p = j, j + 16, j + 32, ... in order (pair p = inputs 2p, 2p + 1; an odd n_in's last pair
// padded with zeros), each from 0, then the fixed tree
//   a_i = c_i + c_(i+8),  b_i = a_i + a_(i+4),  e_i = b_i + b_(i+2),  result = e_0 + e_1.
// The decode tiles hold chain j in lane j of one accumulator per (row, token) (TileBf16);
// the panel kernel, with rows in lanes, runs the 16 chains one after another.

// The tree over the 16 lanes of v.
inline float Bf16Tree(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 e = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(e, _mm_movehdup_ps(e)));
}
// The same tree over 16 vectors, lane by lane.
inline __m512 Bf16Tree(const __m512* c) {
  __m512 a[8];
  #pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) a[i] = _mm512_add_ps(c[i], c[i + 8]);
  #pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) a[i] = _mm512_add_ps(a[i], a[i + 4]);
  a[0] = _mm512_add_ps(a[0], a[2]);
  a[1] = _mm512_add_ps(a[1], a[3]);
  return _mm512_add_ps(a[0], a[1]);
}

template <int R, int T>
__attribute__((target("avx512bf16"))) void TileBf16(const GemmArgs& a, int64_t r0, int64_t t0) {
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
      // Inputs past n_in are zero in both operands: their chains add 0 * 0.
      const __m512bh xv = reinterpret_cast<__m512bh>(
          _mm512_load_si512(reinterpret_cast<const uint16_t*>(a.act + (t0 + t) * a.act_layout.row_bytes) + i));
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[(t0 + t) * a.y_stride + r0 + r] = Bf16Tree(acc[r][t]);
}

// ---- Prefill: int8 panel GEMM over rows repacked per call (panel_pack_avx512.h) ------

// Activation pointers of one token for the panel kernel.
struct PanelAct {
  const uint8_t* qs;
  const float* d;        // one per block (32 inputs; 256 for kQ8KU)
  const int16_t* sum32;  // kQ8KU: sum of the signed codes per 32 inputs
};

// Q4_0 / Q8_0: acc[rv][t] over all blocks for RV panels (16 rows each) and T tokens; writes y.
template <int RV, int T>
void PanelTile(const uint8_t* const* panels, int64_t n_groups, int64_t rec_bytes, const PanelAct* act,
               float* y, int64_t y_stride, int64_t rows_left) {
  constexpr int G = 32;
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
    FoldQ8Blocks<RV, T>(acc, dot, rec, kCode, act, g);
  }
  StorePanelTile<RV, T, false>(acc, y, y_stride, rows_left);
}

// K-quants: per 256-element block the exact integer sums A (and M), then the f32 chain.
template <int RV, int T, int G, bool kMins>
void PanelTileK(const uint8_t* const* panels, int64_t n_groups, int64_t rec_bytes, const PanelAct* act,
                float* y, int64_t y_stride, int64_t rows_left) {
  constexpr int64_t kCode = G * 16;
  constexpr int kGroups = 256 / G;  // per 256-element block
  __m512 acc[RV][T];
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[rv][t] = _mm512_setzero_ps();
  for (int64_t g0 = 0; g0 < n_groups; g0 += kGroups) {
    const int64_t i = g0 / kGroups;
    __m512i sum[RV][T];
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv)
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) sum[rv][t] = _mm512_setzero_si512();
    for (int j = 0; j < kGroups; ++j) {
      const int64_t g = g0 + j;
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
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv) {
        const __m512i sc = _mm512_load_si512(rec[rv] + kCode);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) sum[rv][t] = _mm512_add_epi32(sum[rv][t], _mm512_mullo_epi32(dot[rv][t], sc));
      }
    }
    const uint8_t* rec0[RV];
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv) rec0[rv] = panels[rv] + g0 * rec_bytes + kCode + 128;  // aux of group 0
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 da = _mm512_set1_ps(act[t].d[i]);
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv) {
        const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(rec0[rv] + (kMins ? 4 : 0) * rec_bytes));
        acc[rv][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[rv][t]), _mm512_mul_ps(d, da), acc[rv][t]);
      }
      if constexpr (kMins) {
        int32_t s2[4];
        std::memcpy(s2, act[t].sum32 + 8 * i, 16);
        #pragma GCC unroll 8
        for (int rv = 0; rv < RV; ++rv) {
          __m512i m = _mm512_setzero_si512();
          #pragma GCC unroll 4
          for (int k = 0; k < 4; ++k)
            m = _mm512_dpwssd_epi32(m, _mm512_load_si512(rec0[rv] + k * rec_bytes), _mm512_set1_epi32(s2[k]));
          const __m512 dmin = _mm512_load_ps(reinterpret_cast<const float*>(rec0[rv] + 5 * rec_bytes));
          acc[rv][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, da), acc[rv][t]);
        }
      }
    }
  }
  StorePanelTile<RV, T, false>(acc, y, y_stride, rows_left);
}

constexpr int kPanelToks = 6;   // tokens per register tile: 2 x 6 x 2 accumulators + 2 weights
constexpr int kPanelToksK = 4;  // K-quants also hold the integer block sums: 2 x 4 x 3

using PanelTileFn = void (*)(const uint8_t* const*, int64_t, int64_t, const PanelAct*, float*, int64_t, int64_t);

template <int RV, int T, typename P>
constexpr PanelTileFn PanelTileFor() {
  if constexpr (P::kKQuant) return PanelTileK<RV, T, P::kGroup, P::kMins>;
  else return PanelTile<RV, T>;
}

template <typename P>
void PanelGemm(const GemmArgs& a) {
  constexpr int G = P::kGroup;
  constexpr int kToks = P::kKQuant ? kPanelToksK : kPanelToks;
  const PanelLayout L = MakePanelLayout(G, P::kKQuant);
  const int64_t n_groups = a.n_in / G;
  const int64_t panel_bytes = n_groups * L.rec_bytes;
  static thread_local PanelScratch scratch;
  uint8_t* buf = scratch.Reserve(2 * panel_bytes);
  static constexpr PanelTileFn kTiles[2][6] = {
      {PanelTileFor<1, 1, P>(), PanelTileFor<1, 2, P>(), PanelTileFor<1, 3, P>(), PanelTileFor<1, 4, P>(),
       PanelTileFor<1, 5, P>(), PanelTileFor<1, 6, P>()},
      {PanelTileFor<2, 1, P>(), PanelTileFor<2, 2, P>(), PanelTileFor<2, 3, P>(), PanelTileFor<2, 4, P>(),
       PanelTileFor<2, 5, P>(), PanelTileFor<2, 6, P>()}};
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += 32) {
    const int64_t rows = a.n_rows - r0 < 32 ? a.n_rows - r0 : 32;
    const int rv_count = PackPanels<P>(a, r0, rows, L, panel_bytes, buf);
    const uint8_t* panels[2] = {buf, buf + panel_bytes};
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += kToks) {
      const int nt = static_cast<int>(a.n_tok - t0 < kToks ? a.n_tok - t0 : kToks);
      PanelAct act[kPanelToks];
      for (int t = 0; t < nt; ++t) {
        const uint8_t* row = a.act + (t0 + t) * a.act_layout.row_bytes;
        act[t] = {row, reinterpret_cast<const float*>(row + a.act_layout.d_offset),
                  P::kKQuant ? reinterpret_cast<const int16_t*>(row + a.act_layout.sum_offset) : nullptr};
      }
      kTiles[rv_count - 1][nt - 1](panels, n_groups, L.rec_bytes, act, a.y + t0 * a.y_stride + r0, a.y_stride, rows);
    }
  }
}

// ---- Prefill: BF16 panel GEMM ------------------------------------------------------------
// As PanelGemm, without scales: a panel holds 16 rows as [n_in / 2][16 rows][2 bf16] (the
// pairs in chain order, see Bf16PanelGemm), so
// one vdpbf16ps multiplies 16 rows by one token's pair of inputs (broadcast), and results
// accumulate in f32 lanes, one per row, in the canonical order's 16 chains (see TileBf16),
// summed by its tree at the end: no reloading weights per token.

constexpr int kBf16PanelToks = 8;
// Below this many tokens the 4 x 4 tiles win: the gathers that build panels cost more.
constexpr int kBf16PanelMinTok = 32;

template <int RV, int T>
__attribute__((target("avx512bf16"))) void Bf16PanelTile(const uint8_t* const* panels, int64_t n_pairs,
                                                         const uint8_t* const* act, float* y, int64_t y_stride,
                                                         int64_t rows_left) {
  __m512 chains[16][RV][T];  // the canonical order's 16 chains (see TileBf16)
  for (int c = 0; c < 16; ++c) {
    __m512 acc[RV][T];
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv)
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) acc[rv][t] = _mm512_setzero_ps();
    const int64_t chain_base = 64 * c * ((n_pairs + 15) / 16);  // chain c's pairs, in order
    for (int64_t j = c, q = chain_base; j < n_pairs; j += 16, q += 64) {
      __m512bh w[RV];
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv) w[rv] = reinterpret_cast<__m512bh>(_mm512_load_si512(panels[rv] + q));
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        int32_t x2;
        std::memcpy(&x2, act[t] + q / 16, 4);  // kBf16Chains: the same slot order
        const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_set1_epi32(x2));
        #pragma GCC unroll 8
        for (int rv = 0; rv < RV; ++rv) acc[rv][t] = _mm512_dpbf16_ps(acc[rv][t], w[rv], xv);
      }
    }
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv)
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) chains[c][rv][t] = acc[rv][t];
  }
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv) {
    const int64_t n = rows_left - 16 * rv;
    const __mmask16 m = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      __m512 c[16];
      #pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) c[k] = chains[k][rv][t];
      _mm512_mask_storeu_ps(y + t * y_stride + 16 * rv, m, Bf16Tree(c));
    }
  }
}

void Bf16PanelGemm(const GemmArgs& a) {
  const int64_t n_pairs = (a.n_in + 1) / 2;
  const int64_t p16 = (n_pairs + 15) / 16;
  const int64_t panel_bytes = 16 * p16 * 64;
  // Pair j's 16 rows at slot (j % 16) p16 + j / 16: each chain's pairs back to back.
  auto slot = [p16](int64_t j) { return 64 * ((j % 16) * p16 + j / 16); };
  static thread_local PanelScratch scratch;
  scratch.Reserve(2 * panel_bytes);
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
      // Slots in order (stores stream; stores scattered 4 KiB apart alias the rows' loads):
      // chain c's pairs j = c, c + 16, ...; the first chain's pass reads every line of the
      // 16 rows (prefetching 8 lines ahead), the others find them in cache.
      for (int64_t c = 0; c < 16; ++c) {
        uint8_t* out = panel + 64 * c * p16;
        for (int64_t j = c; j < full_pairs; j += 16, out += 64) {
          if (c == 0)
            for (int64_t lane = 0; lane < n; ++lane)
              _mm_prefetch(reinterpret_cast<const char*>(base + lane * a.w_row_bytes + 4 * j + 512), _MM_HINT_T0);
          _mm512_store_si512(out, _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + 4 * j, 1));
        }
      }
      if (full_pairs < n_pairs) {  // odd n_in: the last input alone, its pair zero
        alignas(64) uint32_t last[16] = {};
        for (int64_t lane = 0; lane < n; ++lane) {
          uint16_t h;
          std::memcpy(&h, base + lane * a.w_row_bytes + 2 * (a.n_in - 1), 2);
          last[lane] = h;
        }
        std::memcpy(panel + slot(full_pairs), last, 64);
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
struct Bf16Tile {
  static void Run(const GemmArgs& a, int64_t r0, int64_t t0) { TileBf16<R, T>(a, r0, t0); }
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
template <typename W, typename P>
void Q8Gemm(const GemmArgs& a) {
  if (a.n_tok == 1) GemvQ8Pair16<P>(a);
  else RowsQ8Gemm<W>(a);
}

}  // namespace

const KernelSet& Avx512Kernels() {
  static const KernelSet kSet = [] {
    KernelSet s = {{
      {ActFormat::kF32, GemmTiled<F32Tile>, kRows},
      {ActFormat::kF32, GemmTiled<F16Tile>, kRows},
      {ActFormat::kBf16, GemmTiled<Bf16Tile>, kRows, ActFormat::kBf16Chains, Bf16PanelGemm, 32, kBf16PanelMinTok},
      {ActFormat::kQ8Pair, Q8Gemm<Q8_0Rows, Q8_0Pair>, 16, ActFormat::kQ8, UPanelGemmQ8_0, 32, kQ8_0PanelMinTok,
       ActFormat::kQ8U, PanelGemm<PackQ8_0>, 32, kUPanelMaxTok + 1},
      {ActFormat::kQ8Pair, Q8Gemm<Q4_0Rows, Q4_0Pair>, 16, ActFormat::kQ8, UPanelGemmQ4_0, 32, kQ4_0PanelMinTok,
       ActFormat::kQ8U, PanelGemm<PackQ4_0>, 32, kUPanelMaxTok + 1},
      {ActFormat::kQ8K, GemmTiled<Q4KTile>, kRows, ActFormat::kQ8KU, PanelGemm<PackQ4_K>, 32, kPanelMinTok},
      {ActFormat::kQ8K, GemmTiled<Q6KTile>, kRows, ActFormat::kQ8KU, PanelGemm<PackQ6_K>, 32, kQ6_KPanelMinTok},
      {ActFormat::kQ8LQ2, GemmTiled<LQ2Tile>, kRows},
    }};
    // BF16 weights without AVX512-BF16 (Ice Lake, Cascade Lake): the AVX2 set's kernel, one
    // f32 order for every batch size as everywhere.
    if (!Avx512HasBf16()) s.entries[kKtBf16] = Avx2Kernels().entries[kKtBf16];
    return s;
  }();
  return kSet;
}

}  // namespace tierlm
