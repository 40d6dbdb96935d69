// AMX prefill kernels: the AVX-512 kernel set (matmul_avx512.cpp) with its int8 panel
// kernels replaced by tile products.
//
// The weight panels are the AVX-512 panel kernel's (panel_pack_avx512.h): per group of G
// inputs, 16 rows' signed codes as [G / 4][16 rows][4], which is exactly a B tile (G / 4
// rows of 64 bytes, 4 consecutive inputs per column). An A tile is 16 tokens' signed int8
// activations of the same group, read in place from the converted activations (row stride
// = the activation row). One TDPBSSD then gives the exact integer dot of every
// (token, row) pair of the group, a C tile of 16 tokens x 16 rows of int32.
//
// The f32 work per (row, token) is the AVX-512 kernels' canonical order, operation for
// operation (the Q4_0 / Q8_0 canonical order and TileQ4K / TileQ6K there): the C tiles are stored and
// folded into f32 accumulators by the same FMAs, so a token's result is bit-identical to
// the AVX-512 path's, whatever its batch (matmul.h). Only the integer dots moved to tiles.
//
// Tiles: C0, C1 (16 x 64 bytes), A0, A1 (16 tokens x G bytes), B0, B1 (G / 4 x 64 bytes):
// two groups in flight, so the tile unit works on one while the vector units fold the
// other (ForEachGroupDot). Each call loads its tile configuration and releases the tiles
// on return.
#include <immintrin.h>

// As in matmul_avx512.cpp: GCC 12 warns inside its own _mm512_inserti64x4 (spurious).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/kernel_registry.h"
#include "kernels/panel_pack_avx512.h"

namespace tierlm {
namespace {

// Tile register numbers (GCC's tile intrinsics paste them into the assembly: literals only).
#define TIERLM_TC0 0
#define TIERLM_TC1 1
#define TIERLM_TA0 2
#define TIERLM_TA1 3
#define TIERLM_TB0 4
#define TIERLM_TB1 5
constexpr int kTC0 = TIERLM_TC0, kTC1 = TIERLM_TC1, kTA0 = TIERLM_TA0, kTA1 = TIERLM_TA1, kTB0 = TIERLM_TB0,
              kTB1 = TIERLM_TB1;
constexpr int kTileToks = 16;  // tokens per A tile (the tile's rows)

// The 64-byte LDTILECFG operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// RAII: the tile configuration for groups of `group` int8 inputs; tiles released at the end.
class Tiles {
 public:
  explicit Tiles(int group) {
    TileConfig cfg;
    for (int c : {kTC0, kTC1}) cfg.rows[c] = 16, cfg.colsb[c] = 64;
    for (int a : {kTA0, kTA1}) cfg.rows[a] = kTileToks, cfg.colsb[a] = static_cast<uint16_t>(group);
    for (int b : {kTB0, kTB1}) cfg.rows[b] = static_cast<uint8_t>(group / 4), cfg.colsb[b] = 64;
    _tile_loadconfig(&cfg);
  }
  ~Tiles() { _tile_release(); }
  Tiles(const Tiles&) = delete;
  Tiles& operator=(const Tiles&) = delete;
};

// 16 tokens' activations in place: rows of `stride` bytes from `base` (qs at 0, scales at
// d_off, sums at s_off, as the activation format lays them out).
struct TokenTile {
  const uint8_t* base;
  int64_t stride, d_off, s_off;
  float D(int t, int64_t i) const {
    float v;
    std::memcpy(&v, base + t * stride + d_off + 4 * i, 4);
    return v;
  }
};

#define TIERLM_INLINE inline __attribute__((always_inline))

// Group g's tile product into C0 (kSet 0: from A0, B0) or C1 (kSet 1: A1, B1).
template <int G, int kSet>
TIERLM_INLINE void IssueGroup(const uint8_t* panel, int64_t rec_bytes, const TokenTile& tok, int64_t g) {
  // The A tiles' 16 rows are 16 strided streams: prefetched kAhead bytes ahead, each line once.
  constexpr int64_t kAhead = 256;
  if ((G * g) % 64 == 0) {
    const uint8_t* p = tok.base + G * g + kAhead;
    #pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) _mm_prefetch(reinterpret_cast<const char*>(p + t * tok.stride), _MM_HINT_T0);
  }
  if constexpr (kSet == 0) {
    _tile_loadd(TIERLM_TA0, tok.base + G * g, tok.stride);
    _tile_loadd(TIERLM_TB0, panel + g * rec_bytes, 64);
    _tile_zero(TIERLM_TC0);
    _tile_dpbssd(TIERLM_TC0, TIERLM_TA0, TIERLM_TB0);
  } else {
    _tile_loadd(TIERLM_TA1, tok.base + G * g, tok.stride);
    _tile_loadd(TIERLM_TB1, panel + g * rec_bytes, 64);
    _tile_zero(TIERLM_TC1);
    _tile_dpbssd(TIERLM_TC1, TIERLM_TA1, TIERLM_TB1);
  }
}

template <int kSet>
TIERLM_INLINE void StoreGroup(int32_t (*c)[16]) {
  if constexpr (kSet == 0) _tile_stored(TIERLM_TC0, c, 64);
  else _tile_stored(TIERLM_TC1, c, 64);
}

// Calls f.Fold(c, g) for g = begin, begin + 1, ... < end, in order, with c group g's C tile
// as stored. Pipelined two ways: the next group's product is issued before a group's C is
// stored (a tile store waits for its product), and a C is folded one group after it was
// stored (vector loads of a just-stored tile wait for the store to complete), so the tile
// unit computes while the vector units fold. The folder keeps its accumulators as members
// indexed by constants only (fold expressions), so they stay in registers across the tile
// instructions.
template <int G, typename Folder>
TIERLM_INLINE void ForEachGroupDot(const uint8_t* panel, int64_t rec_bytes, const TokenTile& tok, int64_t begin,
                                   int64_t end, Folder& f) {
  alignas(64) int32_t c[2][16][16];
  int64_t g = begin;  // issued in tile set (g - begin) % 2, not yet stored
  if (g >= end) return;
  IssueGroup<G, 0>(panel, rec_bytes, tok, g);
  while (true) {
    if (g + 1 < end) IssueGroup<G, 1>(panel, rec_bytes, tok, g + 1);
    StoreGroup<0>(c[0]);
    if (g > begin) f.Fold(c[1], g - 1);
    if (++g >= end) {
      f.Fold(c[0], g - 1);
      break;
    }
    if (g + 1 < end) IssueGroup<G, 0>(panel, rec_bytes, tok, g + 1);
    StoreGroup<1>(c[1]);
    f.Fold(c[0], g - 1);
    if (++g >= end) {
      f.Fold(c[1], g - 1);
      break;
    }
  }
}

// Q4_0 / Q8_0 (kQ8 activations): per block, acc = fma(float(I), d_w * d_a, acc).
struct FoldQ8 {
  const uint8_t* panel;
  int64_t rec_bytes;
  const TokenTile* tok;
  __m512 acc[16];
  template <size_t... T>
  TIERLM_INLINE void Apply(std::index_sequence<T...>, const int32_t (*c)[16], int64_t g) {
    const __m512 dw = _mm512_load_ps(reinterpret_cast<const float*>(panel + g * rec_bytes + 32 * 16));
    ((acc[T] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[T])),
                               _mm512_mul_ps(dw, _mm512_set1_ps(tok->D(T, g))), acc[T])),
     ...);
  }
  TIERLM_INLINE void Fold(const int32_t (*c)[16], int64_t g) { Apply(std::make_index_sequence<16>{}, c, g); }
  template <size_t... T>
  TIERLM_INLINE void Zero(std::index_sequence<T...>) {
    ((acc[T] = _mm512_setzero_ps()), ...);
  }
  template <size_t... T>
  TIERLM_INLINE void Store(std::index_sequence<T...>, int nt, float* y, int64_t y_stride, __mmask16 m) {
    ((static_cast<int>(T) < nt ? _mm512_mask_storeu_ps(y + T * y_stride, m, acc[T]) : void()), ...);
  }
};

inline __mmask16 RowMask(int64_t rows_left) {
  return rows_left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << rows_left) - 1);
}

void TileQ8(const uint8_t* panel, int64_t n_groups, int64_t rec_bytes, const TokenTile& tok, int nt, float* y,
            int64_t y_stride, int64_t rows_left) {
  FoldQ8 f{panel, rec_bytes, &tok, {}};
  f.Zero(std::make_index_sequence<16>{});
  ForEachGroupDot<32>(panel, rec_bytes, tok, 0, n_groups, f);
  f.Store(std::make_index_sequence<16>{}, nt, y, y_stride, RowMask(rows_left));
}

// Q4_K (G = 32, with mins) / Q6_K (G = 16) against kQ8KS activations: per 256-element block
// the integer A = sum of scale * group dot (and Q4_K's M = sum of min * activation sum per 32),
// then acc = fma(float(A), d * d_a, acc) [Q4_K: acc = fnmadd(float(M), dmin * d_a, acc)].
// The integer sums of one 256-element block: sum[t] += scale * C[t] per group.
template <int G>
struct FoldK {
  const uint8_t* panel;
  int64_t rec_bytes;
  __m512i sum[16];
  template <size_t... T>
  TIERLM_INLINE void Apply(std::index_sequence<T...>, const int32_t (*c)[16], int64_t g) {
    const __m512i sc = _mm512_load_si512(panel + g * rec_bytes + G * 16);
    ((sum[T] = _mm512_add_epi32(sum[T], _mm512_mullo_epi32(_mm512_load_si512(c[T]), sc))), ...);
  }
  TIERLM_INLINE void Fold(const int32_t (*c)[16], int64_t g) { Apply(std::make_index_sequence<16>{}, c, g); }
  template <size_t... T>
  TIERLM_INLINE void Zero(std::index_sequence<T...>) {
    ((sum[T] = _mm512_setzero_si512()), ...);
  }
  template <size_t... T>
  TIERLM_INLINE void Spill(std::index_sequence<T...>, int32_t (*out)[16]) {
    ((_mm512_store_si512(out[T], sum[T])), ...);
  }
};

template <int G, bool kMins>
void TileK(const uint8_t* panel, int64_t n_groups, int64_t rec_bytes, const TokenTile& tok, int nt, float* y,
           int64_t y_stride, int64_t rows_left) {
  constexpr int64_t kCode = G * 16;
  constexpr int kGroups = 256 / G;
  alignas(64) float acc_mem[16][16];
  for (auto& row : acc_mem) _mm512_store_ps(row, _mm512_setzero_ps());
  FoldK<G> f{panel, rec_bytes, {}};
  for (int64_t g0 = 0; g0 < n_groups; g0 += kGroups) {
    const int64_t i = g0 / kGroups;
    f.Zero(std::make_index_sequence<16>{});
    ForEachGroupDot<G>(panel, rec_bytes, tok, g0, g0 + kGroups, f);
    alignas(64) int32_t sums[16][16];
    f.Spill(std::make_index_sequence<16>{}, sums);
    const uint8_t* aux = panel + g0 * rec_bytes + kCode + 128;  // aux of group 0
    const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(aux + (kMins ? 4 : 0) * rec_bytes));
    #pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) {
      const __m512 da = _mm512_set1_ps(tok.D(t, i));
      __m512 acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[t])), _mm512_mul_ps(d, da), _mm512_load_ps(acc_mem[t]));
      if constexpr (kMins) {
        int32_t s2[4];
        std::memcpy(s2, tok.base + t * tok.stride + tok.s_off + 2 * 8 * i, 16);
        __m512i m = _mm512_setzero_si512();
        #pragma GCC unroll 4
        for (int k = 0; k < 4; ++k)
          m = _mm512_dpwssd_epi32(m, _mm512_load_si512(aux + k * rec_bytes), _mm512_set1_epi32(s2[k]));
        const __m512 dmin = _mm512_load_ps(reinterpret_cast<const float*>(aux + 5 * rec_bytes));
        acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, da), acc);
      }
      _mm512_store_ps(acc_mem[t], acc);
    }
  }
  const __mmask16 m = RowMask(rows_left);
  for (int t = 0; t < nt; ++t) _mm512_mask_storeu_ps(y + t * y_stride, m, _mm512_load_ps(acc_mem[t]));
}

using AmxTileFn = void (*)(const uint8_t*, int64_t, int64_t, const TokenTile&, int, float*, int64_t, int64_t);

template <typename P>
constexpr AmxTileFn AmxTileFor() {
  if constexpr (!P::kKQuant) return TileQ8;
  else return TileK<P::kGroup, P::kMins>;
}

// The prefill kernel: the thread's rows 32 at a time packed into two panels, then every
// 16 tokens against each panel. A last partial group of tokens is copied, zero-padded to
// 16 rows, so that tile loads never read past the activations.
template <typename P>
void AmxPanelGemm(const GemmArgs& a) {
  constexpr int G = P::kGroup;
  const PanelLayout L = MakePanelLayout(G, P::kKQuant);
  const int64_t n_groups = a.n_in / G;
  const int64_t panel_bytes = n_groups * L.rec_bytes;
  const int64_t rb = a.act_layout.row_bytes;
  static thread_local PanelScratch scratch, tail;
  uint8_t* buf = scratch.Reserve(2 * panel_bytes);
  const int64_t full = a.n_tok / kTileToks * kTileToks;
  const uint8_t* tail_act = nullptr;
  if (full < a.n_tok) {
    uint8_t* t = tail.Reserve(kTileToks * rb);
    const int64_t n = a.n_tok - full;
    std::memcpy(t, a.act + full * rb, static_cast<size_t>(n * rb));
    std::memset(t + n * rb, 0, static_cast<size_t>((kTileToks - n) * rb));
    tail_act = t;
  }
  Tiles tiles(G);
  constexpr AmxTileFn kTile = AmxTileFor<P>();
  for (int64_t r0 = 0; r0 < a.n_rows; r0 += 32) {
    const int64_t rows = a.n_rows - r0 < 32 ? a.n_rows - r0 : 32;
    const int count = PackPanels<P>(a, r0, rows, L, panel_bytes, buf);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += kTileToks) {
      const int nt = static_cast<int>(a.n_tok - t0 < kTileToks ? a.n_tok - t0 : kTileToks);
      const TokenTile tok{t0 < full ? a.act + t0 * rb : tail_act, rb, a.act_layout.d_offset, a.act_layout.sum_offset};
      for (int rv = 0; rv < count; ++rv)
        kTile(buf + rv * panel_bytes, n_groups, L.rec_bytes, tok, nt, a.y + t0 * a.y_stride + r0 + 16 * rv,
              a.y_stride, rows - 16 * rv);
    }
  }
}

// Batches at least this large use the tiles; below, the AVX-512 kernels (the same results).
// Measured on one thread, a 2048 x 5632 matrix (MatmulSpeed): the tiles beat RowsQ8Gemm from
// 32 tokens (Q4_0 2.2 against 3.0 ms), the Q4_K panel from 16 (2.16 against 2.23 ms; 2.18
// against 1.76 at 8), the Q6_K panel only past 128 (29.9 against 31.5 ms at 512; slower at
// 128, 9.7 against 9.1).
constexpr int kAmxMinTokQ8 = 32;
constexpr int kAmxMinTokQ4K = 16;
constexpr int kAmxMinTokQ6K = 256;

}  // namespace

const KernelSet& AmxKernels() {
  static const KernelSet kSet = [] {
    KernelSet s = Avx512Kernels();
    auto use = [&s](int kt, ActFormat act, GemmFn fn, int min_tok) {
      KernelSet::Entry& e = s.entries[kt];
      e.large_act = act;
      e.large = fn;
      e.large_row_tile = 32;
      e.large_min_tok = min_tok;
    };
    use(kKtQ8_0, ActFormat::kQ8, AmxPanelGemm<PackQ8_0>, kAmxMinTokQ8);
    use(kKtQ4_0, ActFormat::kQ8, AmxPanelGemm<PackQ4_0>, kAmxMinTokQ8);
    use(kKtQ4_K, ActFormat::kQ8KS, AmxPanelGemm<PackQ4_K>, kAmxMinTokQ4K);
    use(kKtQ6_K, ActFormat::kQ8KS, AmxPanelGemm<PackQ6_K>, kAmxMinTokQ6K);
    return s;
  }();
  return kSet;
}

}  // namespace tierlm
