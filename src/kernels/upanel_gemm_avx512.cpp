// Q4_0 / Q8_0 batches of 8 to 64 tokens on AVX-512 (VNNI): unsigned-weight panels
// (panel_pack_avx512.h, PackUPanel) multiplied in register tiles; where each batch size
// goes is matmul_avx512.cpp's table (kUPanelMaxTok).
#include <immintrin.h>

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <cstdint>

#include "kernels/block_types.h"
#include "kernels/kernel_registry.h"
#include "kernels/panel_pack_avx512.h"

namespace tierlm {
namespace {

constexpr int kUPanelToks = 6;           // tokens per register tile: 2 x 6 x 2 accumulators + 2 weights
constexpr int kUPanelPrefetchCalls = 3;  // tile calls the next rows' prefetches spread over

// ---- Q4_0 / Q8_0 batches: unsigned-weight panels (panel_pack_avx512.h, PackUPanel) -------
// As PanelGemm (matmul_avx512.cpp), 32 rows (two panels) packed at a time and multiplied
// by every token in register tiles of 2 panels x kUPanelToks tokens, but the weights stay
// vpdpbusd's unsigned operand (kQ8 activations, signed, with their block sums), so the
// packer only transposes, and the kernels fetch the next rows ahead.

struct UPanelAct {
  const int8_t* qs;     // kQ8: signed codes in input order
  const float* d;       // one per block
  const int32_t* corr;  // per block -o * (the sum of its codes), o the weight codes' offset
};

// acc[rv][t] over all blocks for RV U-panels (16 rows each) and T tokens; writes y with
// rows back in order. Per block the dot starts at corr = -o * sum (o = 8 for Q4_0 nibbles,
// 128 for Q8_0) and ends as the exact I_b; the f32 step is the canonical one.
// Lines pf + 64 i for i < min(n_groups * pf_per_group, pf_lines) are asked into L2 along
// the way, pf_per_group per block (rows of the next pack: see UPanelGemm).
template <int RV, int T>
void UPanelTile(const uint8_t* const* panels, int64_t n_groups, const UPanelAct* act, float* y,
                int64_t y_stride, int64_t rows_left, const uint8_t* pf, int64_t pf_per_group,
                int64_t pf_lines) {
  constexpr int64_t kCode = kUPanelCodeBytes;
  constexpr int64_t kRec = kUPanelRecBytes;
  __m512 acc[RV][T];
  #pragma GCC unroll 8
  for (int rv = 0; rv < RV; ++rv)
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[rv][t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint8_t* rec[RV];
    #pragma GCC unroll 8
    for (int rv = 0; rv < RV; ++rv) rec[rv] = panels[rv] + g * kRec;
    for (int64_t i = 0; i < pf_per_group; ++i)
      _mm_prefetch(reinterpret_cast<const char*>(pf + 64 * std::min(g * pf_per_group + i, pf_lines - 1)), _MM_HINT_T1);
    __m512i dot[RV][T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv) dot[rv][t] = _mm512_set1_epi32(act[t].corr[g]);
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      __m512i w[RV];
      #pragma GCC unroll 8
      for (int rv = 0; rv < RV; ++rv) w[rv] = _mm512_load_si512(rec[rv] + 64 * k);
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512i av = _mm512_set1_epi32(LoadI32(act[t].qs + 32 * g + 4 * k));
        #pragma GCC unroll 8
        for (int rv = 0; rv < RV; ++rv) dot[rv][t] = _mm512_dpbusd_epi32(dot[rv][t], w[rv], av);
      }
    }
    FoldQ8Blocks<RV, T>(acc, dot, rec, kCode, act, g);
  }
  StorePanelTile<RV, T, true>(acc, y, y_stride, rows_left);
}

using UPanelTileFn = void (*)(const uint8_t* const*, int64_t, const UPanelAct*, float*, int64_t, int64_t,
                              const uint8_t*, int64_t, int64_t);

template <typename P>
void UPanelGemm(const GemmArgs& a) {
  const int64_t n_groups = a.n_in / 32;
  const int64_t panel_bytes = n_groups * kUPanelRecBytes;
  static thread_local PanelScratch scratch, corr_scratch;
  uint8_t* buf = scratch.Reserve(2 * panel_bytes);
  // Each token's block corrections, once per call (the kernels broadcast them from memory).
  constexpr int32_t kOff = P::kNibbles ? 8 : 128;  // the weight codes' offset
  auto* corr = reinterpret_cast<int32_t*>(corr_scratch.Reserve(a.n_tok * n_groups * 4));
  for (int64_t t = 0; t < a.n_tok; ++t) {
    const auto* sum = reinterpret_cast<const int32_t*>(a.act + t * a.act_layout.row_bytes + a.act_layout.sum_offset);
    for (int64_t g = 0; g < n_groups; ++g) corr[t * n_groups + g] = -kOff * sum[g];
  }
  static constexpr UPanelTileFn kTiles[2][kUPanelToks] = {
      {UPanelTile<1, 1>, UPanelTile<1, 2>, UPanelTile<1, 3>, UPanelTile<1, 4>,
       UPanelTile<1, 5>, UPanelTile<1, 6>},
      {UPanelTile<2, 1>, UPanelTile<2, 2>, UPanelTile<2, 3>, UPanelTile<2, 4>,
       UPanelTile<2, 5>, UPanelTile<2, 6>}};
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += 32) {
    const int64_t rows = a.n_rows - r0 < 32 ? a.n_rows - r0 : 32;
    const int rv_count = rows > 16 ? 2 : 1;
    for (int rv = 0; rv < rv_count; ++rv)
      PackUPanel<P>(a.w + (r0 + 16 * rv) * a.w_row_bytes, a.w_row_bytes, std::min<int64_t>(16, rows - 16 * rv),
                    n_groups, buf + rv * panel_bytes);
    const uint8_t* panels[2] = {buf, buf + panel_bytes};
    // The next 32 rows of the call's range come into L2 while these are multiplied, their
    // lines spread evenly over the blocks of the last kUPanelPrefetchCalls tile calls
    // (earlier, a long batch's activations streaming through would evict them again).
    // Issued all at once by the packer they stalled it; left to the hardware prefetchers,
    // 16 rows in flight are more streams than they follow.
    const int64_t next_rows = std::min<int64_t>(32, a.n_rows - r0 - rows);
    const int64_t pf_lines = (next_rows * a.w_row_bytes + 63) / 64;
    const int64_t all_calls = (a.n_tok + kUPanelToks - 1) / kUPanelToks;
    const int64_t n_calls = std::min<int64_t>(all_calls, kUPanelPrefetchCalls);
    const int64_t pf_per_group = (pf_lines + n_calls * n_groups - 1) / (n_calls * n_groups);
    const uint8_t* pf = a.w + (r0 + rows) * a.w_row_bytes;
    // The tokens split evenly over the calls (16: 6 + 5 + 5, not 6 + 6 + 4): a short tile
    // pays a long one's per-block costs. 16 tokens 64.5 -> 63.2 ms, 8 (4 + 4, not 6 + 2)
    // 51.5 -> 49.1, 20 (5 x 4) 76.6 -> 74.9 (the seven matrices x 22 layers from DRAM).
    const int64_t per_call = (a.n_tok + all_calls - 1) / all_calls;
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += per_call) {
      const int nt = static_cast<int>(a.n_tok - t0 < per_call ? a.n_tok - t0 : per_call);
      const int64_t call = t0 / per_call - (all_calls - n_calls);  // < 0: no prefetching
      const int64_t pf_first = call * pf_per_group * n_groups;       // the call's first line
      const bool any = call >= 0 && pf_first < pf_lines;
      UPanelAct act[kUPanelToks];
      for (int t = 0; t < nt; ++t) {
        const uint8_t* row = a.act + (t0 + t) * a.act_layout.row_bytes;
        act[t] = {reinterpret_cast<const int8_t*>(row), reinterpret_cast<const float*>(row + a.act_layout.d_offset),
                  corr + (t0 + t) * n_groups};
      }
      kTiles[rv_count - 1][nt - 1](panels, n_groups, act, a.y + t0 * a.y_stride + r0, a.y_stride, rows,
                                   any ? pf + 64 * pf_first : nullptr, any ? pf_per_group : 0,
                                   pf_lines - pf_first);
    }
  }
}

}  // namespace

void UPanelGemmQ4_0(const GemmArgs& a) { UPanelGemm<PackQ4_0>(a); }
void UPanelGemmQ8_0(const GemmArgs& a) { UPanelGemm<PackQ8_0>(a); }

}  // namespace tierlm
