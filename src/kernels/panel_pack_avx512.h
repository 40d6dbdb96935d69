// The int8 weight panels of the AVX-512 and AMX prefill kernels: rows repacked per call,
// 16 at a time, into the layout both read. Internal to matmul_avx512.cpp and matmul_amx.cpp
// (compiled with AVX-512 flags; everything here has internal linkage).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/block_types.h"
#include "kernels/kernel_registry.h"

namespace tierlm {
namespace {

// ---- 16 rows in lanes (also RowsQ8Gemm's) ---------------------------------------------

// v[i] holds rows 4i..4i+3 in its 128-bit groups (4 dwords each); on return v[j] holds
// dword j of every row, row 4i + g in lane 4g + i.
inline void Transpose4x4Groups(__m512i (&v)[4]) {
  const __m512i a0 = _mm512_unpacklo_epi32(v[0], v[1]), a1 = _mm512_unpackhi_epi32(v[0], v[1]);
  const __m512i a2 = _mm512_unpacklo_epi32(v[2], v[3]), a3 = _mm512_unpackhi_epi32(v[2], v[3]);
  v[0] = _mm512_unpacklo_epi64(a0, a2);
  v[1] = _mm512_unpackhi_epi64(a0, a2);
  v[2] = _mm512_unpacklo_epi64(a1, a3);
  v[3] = _mm512_unpackhi_epi64(a1, a3);
}

// The 16 f16 block scales at p + off[l] (lane l), as f32: what a 16-lane gather gives,
// without the gather instruction. Where the CPU carries the Gather Data Sampling
// mitigation (Ice Lake server among them) a vpgatherdd costs 25-40 cycles; this costs
// 1.6-2.8x less there (matmul_bench BM_ScaleLoads).
inline __m512 LoadScales16(const uint8_t* p, const int64_t* off) {
  uint64_t q[4];
  #pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    uint16_t h[4];
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) std::memcpy(&h[j], p + off[4 * i + j], 2);
    q[i] = uint64_t{h[0]} | uint64_t{h[1]} << 16 | uint64_t{h[2]} << 32 | uint64_t{h[3]} << 48;
  }
  return _mm512_cvtph_ps(_mm256_set_epi64x(static_cast<long long>(q[3]), static_cast<long long>(q[2]),
                                           static_cast<long long>(q[1]), static_cast<long long>(q[0])));
}

// 16 bytes at p + roff[r] for each of 16 rows r, as 4 vectors (see Transpose4x4Groups).
inline void Load16x16(const uint8_t* p, const int64_t* roff, __m512i (&v)[4]) {
  #pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    __m512i x = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + roff[4 * i])));
    x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + roff[4 * i + 1])), 1);
    x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + roff[4 * i + 2])), 2);
    v[i] = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + roff[4 * i + 3])), 3);
  }
  Transpose4x4Groups(v);
}

// Lane l of a 16-row tile holds row RowOfLane()[l] = 4 (l % 4) + l / 4 (an involution: also
// the lane of row l).
inline __m512i RowOfLane() { return _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0); }

// ---- Prefill: int8 panel GEMM over rows repacked per call -------------------------------
// For a batch of tokens, the thread's rows are taken 32 at a time (two panels of 16) and
// repacked once into a scratch buffer that every token then reuses from L1/L2:
//   per group g of G weights (G = 32, or 16 for Q6_K), per panel:
//     int8 code[G / 4][16 rows][4]  (signed weight codes, 4 consecutive inputs per lane)
//     scale[16]                     (Q4_0 / Q8_0: float d of the block; K-quants: the
//                                    group's integer scale as int32)
//     int32 corr[16]                (-128 * sum of the group's codes, see below)
//     aux[16] (K-quants only)       per 256-element block, in its groups k = 0, 1, ...:
//                                    Q4_K: k < 4 the int16 mins (m_2k, m_2k+1), k = 4 float
//                                    d, k = 5 float dmin; Q6_K: k = 0 float d
// so one vpdpbusd multiplies 16 rows by 4 inputs of one token, the token's 4 activation
// bytes broadcast. Activations are unsigned (q + 128, kQ8U / kQ8KU); starting each group's
// dot at corr removes the +128, leaving the exact integer dot of the signed codes.
//
// The f32 operations per (row, token) are the decode kernels' canonical ones, in the same
// order (so results do not depend on the batch): Q4_0 / Q8_0 one FMA per block (the
// canonical order in matmul_avx512.cpp); K-quants one integer sum per 256-element block,
// A = sum of scale * group dot (and for Q4_K M = sum of min * activation sum per 32), then
//   acc = fma(float(A), d * d_a, acc)  [Q4_K: acc = fnmadd(float(M), dmin * d_a, acc)]
// (see TileQ4K / TileQ6K).

struct PanelLayout {
  int group;            // weights per group
  int64_t code_bytes;   // group * 16
  int64_t rec_bytes;    // code_bytes + scale + corr (+ aux)
};

inline PanelLayout MakePanelLayout(int group, bool aux) {
  const int64_t code = group * 16;
  return {group, code, code + 128 + (aux ? 64 : 0)};
}

// Writes row `lane`'s group (codes, 4-byte scale) into a record, codes row-major for now:
// FinishPanel then transposes them to the kernel's order and adds the corrections.
inline void PutGroup(uint8_t* rec, const PanelLayout& L, int lane, const int8_t* codes, const void* scale4) {
  std::memcpy(rec + lane * L.group, codes, static_cast<size_t>(L.group));
  std::memcpy(rec + L.code_bytes + 4 * lane, scale4, 4);
}
inline void PutAux(uint8_t* rec, const PanelLayout& L, int lane, const void* v4) {
  std::memcpy(rec + L.code_bytes + 128 + 4 * lane, v4, 4);
}

// Transposes every record's codes from [16 rows][G] to [G / 4][16 rows][4] and writes
// corr = -128 * (sum of each row's codes). 16 bytes of every row at a time by Load16x16
// and one permutation to row order, not by gathers (25-40 cycles each under the Gather
// Data Sampling mitigation).
template <int G>
void FinishPanel(uint8_t* panel, int64_t n_groups, int64_t rec_bytes) {
  static_assert(G % 16 == 0);
  int64_t roff[16];
  for (int r = 0; r < 16; ++r) roff[r] = r * G;
  const __m512i lane_to_row = RowOfLane();
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t g = 0; g < n_groups; ++g) {
    uint8_t* rec = panel + g * rec_bytes;
    __m512i v[G / 4];
    #pragma GCC unroll 2
    for (int h = 0; h < G / 16; ++h) {
      __m512i t[4];
      Load16x16(rec + 16 * h, roff, t);
      #pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) v[4 * h + j] = _mm512_permutexvar_epi32(lane_to_row, t[j]);
    }
    __m512i sum = _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int k = 0; k < G / 4; ++k) {
      sum = _mm512_dpbusd_epi32(sum, ones, v[k]);
      _mm512_store_si512(rec + 64 * k, v[k]);
    }
    _mm512_store_si512(rec + G * 16 + 64, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
  }
}

template <int kBytes>
inline void PrefetchLines(const uint8_t* p) {
  #pragma GCC unroll 8
  for (int o = 0; o < kBytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + o, _MM_HINT_T0);
}

// Per weight type: Q4_0 / Q8_0 panels are built by PackPanelQ8; the K-quants' Row packs one
// weight row into lane `lane` of a panel (n_groups records of L.rec_bytes), which
// FinishPanel then transposes.
struct PackQ4_0 {
  static constexpr int kGroup = 32;
  static constexpr bool kNibbles = true;
  static constexpr int64_t kBlockBytes = sizeof(BlockQ4_0);
  static constexpr bool kKQuant = false;
  static constexpr bool kMins = false;
};
struct PackQ8_0 {
  static constexpr int kGroup = 32;
  static constexpr bool kNibbles = false;
  static constexpr int64_t kBlockBytes = sizeof(BlockQ8_0);
  static constexpr bool kKQuant = false;
  static constexpr bool kMins = false;
};
struct PackQ4_K {
  static constexpr int kGroup = 32;
  static constexpr bool kKQuant = true;
  static constexpr bool kMins = true;
  static void Row(const uint8_t* row, int64_t n_in, uint8_t* panel, const PanelLayout& L, int lane, int64_t pf) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(row);
    for (int64_t i = 0; i < n_in / 256; ++i) {
      PrefetchLines<sizeof(BlockQ4_K)>(reinterpret_cast<const uint8_t*>(b + i) + pf);
      const float d = _cvtsh_ss(b[i].d), dmin = _cvtsh_ss(b[i].dmin);
      uint8_t* rec0 = panel + 8 * i * L.rec_bytes;
      for (int c = 0; c < 4; ++c) {
        alignas(32) int8_t lo[32], hi[32];
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * c));
        _mm256_store_si256(reinterpret_cast<__m256i*>(lo), _mm256_and_si256(q, _mm256_set1_epi8(15)));
        _mm256_store_si256(reinterpret_cast<__m256i*>(hi),
                           _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(15)));
        int sc0, m0, sc1, m1;
        UnpackQ4KScaleMin(b[i].scales, 2 * c, &sc0, &m0);
        UnpackQ4KScaleMin(b[i].scales, 2 * c + 1, &sc1, &m1);
        const int32_t s0 = sc0, s1 = sc1;
        PutGroup(rec0 + (2 * c) * L.rec_bytes, L, lane, lo, &s0);
        PutGroup(rec0 + (2 * c + 1) * L.rec_bytes, L, lane, hi, &s1);
        const int16_t mins[2] = {static_cast<int16_t>(m0), static_cast<int16_t>(m1)};
        PutAux(rec0 + c * L.rec_bytes, L, lane, mins);
      }
      PutAux(rec0 + 4 * L.rec_bytes, L, lane, &d);
      PutAux(rec0 + 5 * L.rec_bytes, L, lane, &dmin);
    }
  }
};
struct PackQ6_K {
  static constexpr int kGroup = 16;
  static constexpr bool kKQuant = true;
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
      uint8_t* rec0 = panel + 16 * i * L.rec_bytes;
      for (int g = 0; g < 16; ++g) {
        const int32_t sc = b[i].scales[g];
        PutGroup(rec0 + g * L.rec_bytes, L, lane, c + 16 * g, &sc);
      }
      PutAux(rec0, L, lane, &d);
    }
  }
};

// A panel of n <= 16 Q4_0 or Q8_0 rows (row r at base + r * rb), built in registers: each
// block's 16 rows transposed by Load16x16 (rows into lanes, 4 codes per lane, as the panel
// stores them), a fraction of the instructions of writing row by row and gathering back.
// Lanes past n repeat row n - 1: the kernels compute them and never store them.
template <typename P>
void PackPanelQ8(const uint8_t* base, int64_t rb, int64_t n, int64_t n_groups, const PanelLayout& L,
                 uint8_t* panel) {
  int64_t roff[16];
  for (int r = 0; r < 16; ++r) roff[r] = (r < n ? r : n - 1) * rb;
  const __m512i lane_to_row = RowOfLane();
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i eight = _mm512_set1_epi8(8);
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint8_t* blk = base + g * P::kBlockBytes;
    #pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) _mm_prefetch(reinterpret_cast<const char*>(blk + roff[r] + 32 * rb), _MM_HINT_T0);
    __m512i u[8];
    __m512i v[4];
    Load16x16(blk + 2, roff, v);
    if constexpr (P::kNibbles) {
      #pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        u[j] = _mm512_sub_epi8(_mm512_and_si512(v[j], low4), eight);
        u[4 + j] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v[j], 4), low4), eight);
      }
    } else {
      __m512i w[4];
      Load16x16(blk + 18, roff, w);
      #pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        u[j] = v[j];
        u[4 + j] = w[j];
      }
    }
    uint8_t* rec = panel + g * L.rec_bytes;
    __m512i sum = _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      const __m512i x = _mm512_permutexvar_epi32(lane_to_row, u[k]);  // row r into lane r
      _mm512_store_si512(rec + 64 * k, x);
      sum = _mm512_dpbusd_epi32(sum, ones, x);
    }
    const __m512 d = LoadScales16(blk, roff);
    _mm512_store_ps(reinterpret_cast<float*>(rec + L.code_bytes), d);
    _mm512_store_si512(rec + L.code_bytes + 64, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
  }
}

// ---- The panel kernels' shared steps ---------------------------------------------------

inline int32_t LoadI32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The canonical f32 step of a Q4_0 / Q8_0 block g for RV panels x T tokens (see "The
// canonical order of a Q4_0 / Q8_0 dot product" in matmul_avx512.cpp):
// acc = fma(float(I_b), d_w * d_a, acc),
// the 16 rows' weight scales at rec[rv] + scale_off. Shared by PanelTile and UPanelTile
// (upanel_gemm_avx512.cpp).
template <int RV, int T, typename Act>
__attribute__((always_inline)) inline void FoldQ8Blocks(__m512 (&acc)[RV][T], const __m512i (&dot)[RV][T],
                                                        const uint8_t* const (&rec)[RV], int64_t scale_off,
                                                        const Act* act, int64_t g) {
  __m512 scale[RV];
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv) scale[rv] = _mm512_load_ps(reinterpret_cast<const float*>(rec[rv] + scale_off));
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m512 da = _mm512_set1_ps(act[t].d[g]);
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv)
      acc[rv][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[rv][t]), _mm512_mul_ps(scale[rv], da), acc[rv][t]);
  }
}

// Stores a panel tile's accumulators (panel rv's lane l: row 16 rv + l, or with kLaneOrder
// row 16 rv + RowOfLane()[l]) for the first rows_left rows.
template <int RV, int T, bool kLaneOrder>
__attribute__((always_inline)) inline void StorePanelTile(const __m512 (&acc)[RV][T], float* y, int64_t y_stride,
                                                          int64_t rows_left) {
  const __m512i row_of_lane = RowOfLane();  // an involution: also the lane of each row
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv) {
    const int64_t n = rows_left - 16 * rv;
    const __mmask16 m = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      _mm512_mask_storeu_ps(y + t * y_stride + 16 * rv, m,
                            kLaneOrder ? _mm512_permutexvar_ps(row_of_lane, acc[rv][t]) : acc[rv][t]);
  }
}

// ---- Unsigned-weight panels (the AVX-512 Q4_0 / Q8_0 kernels) ---------------------------
// The panels above make the weights vpdpbusd's signed operand, which the AMX tiles need
// too, at the price of unpacking nibbles, permuting rows into order and summing codes for
// every block of every call: for a step of 16 sequences decoding together that packing
// cost as much as the products. A U-panel keeps the weights as the unsigned operand, the
// way the small-batch kernels do, and the activations signed (kQ8, with their block sums):
//   per group g of 32 inputs, per panel of 16 rows, lane l holding row RowOfLane()[l]
//   (Load16x16's order; the kernel puts rows back in order when it stores):
//     byte[8][16 lanes][4]  vector k: the unsigned codes of inputs 4k..4k+3 (Q4_0: the
//                           nibbles, code + 8; Q8_0: code + 128)
//     float scale[16]
// (The Q4_0 nibbles are split here, not in the kernel: 512-bit shifts issue on port 0
// only, one of the two vpdpbusd keeps busy; split in the kernel, 512 tokens ran 5% slower.)
// vpdpbusd then sums (w + o) * a; starting the dot at -o * (the token's block sum) leaves
// the exact integer dot of the signed codes, the same I_b as every other Q4_0 / Q8_0
// kernel, so the f32 chain (and every bit) is unchanged.
constexpr int64_t kUPanelCodeBytes = 512;
constexpr int64_t kUPanelRecBytes = kUPanelCodeBytes + 64;

// 16 bytes at off + (row r's block) for the 16 rows at q[i] + k * rb (r = 4i + k), as
// Load16x16 gives them; q[i] = the block of row 4i.
inline void Load16x16Strided(const uint8_t* const (&q)[4], int64_t off, int64_t rb, int64_t rb3, __m512i (&v)[4]) {
  #pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const uint8_t* p = q[i] + off;
    __m512i x = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + rb)), 1);
    x = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * rb)), 2);
    v[i] = _mm512_inserti32x4(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + rb3)), 3);
  }
  Transpose4x4Groups(v);
}

// LoadScales16 for the same 16 rows, lanes in Load16x16's order: lane 4i + j holds row
// 4j + i, at q[j] + i * rb.
inline __m512 LoadScales16Strided(const uint8_t* const (&q)[4], int64_t rb, int64_t rb3) {
  const int64_t step[4] = {0, rb, 2 * rb, rb3};
  uint64_t w[4];
  #pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    uint16_t h[4];
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) std::memcpy(&h[j], q[j] + step[i], 2);
    w[i] = uint64_t{h[0]} | uint64_t{h[1]} << 16 | uint64_t{h[2]} << 32 | uint64_t{h[3]} << 48;
  }
  return _mm512_cvtph_ps(_mm256_set_epi64x(static_cast<long long>(w[3]), static_cast<long long>(w[2]),
                                           static_cast<long long>(w[1]), static_cast<long long>(w[0])));
}

// A U-panel of n <= 16 rows (row r at base + r * rb); lanes past n repeat row n - 1. Full
// panels address their rows from four pointers and the stride rather than 16 offsets
// (which do not fit in registers: their spills and address arithmetic were most of the
// packer's time). No prefetching here: the kernels ask for the next rows' lines while
// they multiply these (UPanelGemm).
template <typename P>
void PackUPanel(const uint8_t* base, int64_t rb, int64_t n, int64_t n_groups, uint8_t* panel) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  auto put = [&](uint8_t* rec, __m512i (&v)[4], __m512i (&w)[4], __m512 scale) {
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      if constexpr (P::kNibbles) {
        _mm512_store_si512(rec + 64 * j, _mm512_and_si512(v[j], low4));
        _mm512_store_si512(rec + 256 + 64 * j, _mm512_and_si512(_mm512_srli_epi16(v[j], 4), low4));
      } else {
        _mm512_store_si512(rec + 64 * j, _mm512_xor_si512(v[j], flip));
        _mm512_store_si512(rec + 256 + 64 * j, _mm512_xor_si512(w[j], flip));
      }
    }
    _mm512_store_ps(reinterpret_cast<float*>(rec + kUPanelCodeBytes), scale);
  };
  if (n == 16) {
    const int64_t rb3 = 3 * rb;
    for (int64_t g = 0; g < n_groups; ++g) {
      const int64_t o = g * P::kBlockBytes;
      const uint8_t* q[4] = {base + o, base + 4 * rb + o, base + 8 * rb + o, base + 12 * rb + o};
      __m512i v[4], w[4];
      Load16x16Strided(q, 2, rb, rb3, v);
      if constexpr (!P::kNibbles) Load16x16Strided(q, 18, rb, rb3, w);
      put(panel + g * kUPanelRecBytes, v, w, LoadScales16Strided(q, rb, rb3));
    }
    return;
  }
  int64_t roff[16];
  for (int r = 0; r < 16; ++r) roff[r] = (r < n ? r : n - 1) * rb;
  int64_t loff[16];  // lane l's row offset
  for (int l = 0; l < 16; ++l) loff[l] = roff[4 * (l % 4) + l / 4];
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint8_t* blk = base + g * P::kBlockBytes;
    __m512i v[4], w[4];
    Load16x16(blk + 2, roff, v);
    if constexpr (!P::kNibbles) Load16x16(blk + 18, roff, w);
    put(panel + g * kUPanelRecBytes, v, w, LoadScales16(blk, loff));
  }
}

// Packs weight rows [r0, r0 + rows) of a (rows <= 32) into one or two panels of panel_bytes
// each at out (panel 1 only when rows > 16); a panel's missing rows are zero (K-quants) or repeat its last row (PackPanelQ8). Returns the
// number of panels.
template <typename P>
int PackPanels(const GemmArgs& a, int64_t r0, int64_t rows, const PanelLayout& L, int64_t panel_bytes,
               uint8_t* out) {
  const int64_t n_groups = a.n_in / P::kGroup;
  const int count = rows > 16 ? 2 : 1;
  for (int rv = 0; rv < count; ++rv) {
    uint8_t* panel = out + rv * panel_bytes;
    const int64_t n = rows - 16 * rv < 16 ? rows - 16 * rv : 16;
    if constexpr (!P::kKQuant) {
      PackPanelQ8<P>(a.w + (r0 + 16 * rv) * a.w_row_bytes, a.w_row_bytes, n, n_groups, L, panel);
    } else {
      if (n < 16) std::memset(panel, 0, static_cast<size_t>(panel_bytes));
      for (int64_t lane = 0; lane < n; ++lane)
        P::Row(a.w + (r0 + 16 * rv + lane) * a.w_row_bytes, a.n_in, panel, L, static_cast<int>(lane),
               32 * a.w_row_bytes);
      FinishPanel<P::kGroup>(panel, n_groups, L.rec_bytes);
    }
  }
  return count;
}

// A thread's growable 64-byte-aligned scratch buffer.
struct PanelScratch {
  uint8_t* p = nullptr;
  int64_t cap = 0;
  ~PanelScratch() { std::free(p); }
  uint8_t* Reserve(int64_t bytes) {
    if (cap < bytes) {
      std::free(p);
      cap = (bytes + 4095) / 4096 * 4096;
      p = static_cast<uint8_t*>(std::aligned_alloc(64, static_cast<size_t>(cap)));
      if (!p) std::abort();
    }
    return p;
  }
};

}  // namespace
}  // namespace tierlm
