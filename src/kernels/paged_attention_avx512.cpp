// AVX-512 pieces of PagedAttention: decoding one head's key or value rows to f32 (f16 and
// bf16 by conversion instructions), transposing 16 keys so that each lane holds one key,
// and folding up to 16 keys into the running softmax states of the heads that share them
// (scores 16 keys at a time by broadcast FMAs, no horizontal sums; a vectorized exp; values
// weighted by broadcast).
#include <immintrin.h>

// GCC 12 warns inside its own intrinsics (the undefined vectors its masked forms start
// from); the warnings are spurious.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/paged_attention_internal.h"
#include "kernels/simd_math_avx512.h"

namespace tierlm {
namespace {

// Head h's scores against C chunks of 16 keys in lanes: chunk c's transposed keys at
// Kt + 16 c hd, vector d = dimension d of its keys 0..15. One FMA chain per score over the
// dimensions in order: the same operations whatever the batch, the chunk's length, how
// many heads or chunks are computed together. Each query element is broadcast once for
// all C chunks, each key vector loaded once for all H heads: H = 8, C = 2 is 10 loads per
// 16 FMAs (on an Ice Lake Xeon about one load a cycle issues beside the FMAs, so the loads
// per FMA set the pace: 12 per 16, four heads with two chains each, ran 20% slower).
// Iteration d also prefetches pf[d] while d < n_pf.
template <int D, int H, int C>
inline void ScoresT(const float* q, int64_t q_stride, const float* Kt, __m512 (&s)[H][C], const char* const* pf,
                    int64_t n_pf) {
  constexpr int hd = 16 * D;
  #pragma GCC unroll 16
  for (int h = 0; h < H; ++h)
    #pragma GCC unroll 2
    for (int c = 0; c < C; ++c) s[h][c] = _mm512_setzero_ps();
  for (int d = 0; d < hd; ++d) {
    if (d < n_pf) _mm_prefetch(pf[d], _MM_HINT_T0);
    __m512 k[C];
    #pragma GCC unroll 2
    for (int c = 0; c < C; ++c) k[c] = _mm512_loadu_ps(Kt + c * 16 * hd + d * 16);
    #pragma GCC unroll 16
    for (int h = 0; h < H; ++h) {
      const __m512 qv = _mm512_set1_ps(q[h * q_stride + d]);
      #pragma GCC unroll 2
      for (int c = 0; c < C; ++c) s[h][c] = _mm512_fmadd_ps(qv, k[c], s[h][c]);
    }
  }
}

// Four horizontal reductions in one tree: lane 4h of the result is v[h] reduced by Op, the
// same pairs in the same order as GCC's _mm512_reduce_add_ps / _mm512_reduce_max_ps
// (lane i with i + 8, then i + 4, i + 2, i + 1, the upper operand first), so the same bits
// as four separate calls, in a third of the shuffles.
template <typename Op>
inline __m512 Reduce4(const __m512 (&v)[4], Op op) {
  const __m512 x01 = op(_mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(3, 2, 3, 2)),
                        _mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(1, 0, 1, 0)));
  const __m512 x23 = op(_mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(3, 2, 3, 2)),
                        _mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(1, 0, 1, 0)));
  const __m512 y = op(_mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(3, 1, 3, 1)),
                      _mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(2, 0, 2, 0)));
  const __m512 z = op(y, _mm512_permute_ps(y, _MM_SHUFFLE(1, 0, 3, 2)));
  return op(z, _mm512_permute_ps(z, _MM_SHUFFLE(2, 3, 0, 1)));
}

// Folds H heads' scores of C chunks of 16 keys, s[h][c] (keys in lanes; the last chunk's
// live lanes in `live`, the others whole: n keys in all), into their running states (head
// h at states + h * state_stride) and accumulates their values (V: n rows): one online
// softmax step over up to 16 C keys (one maximum, one rescale, one sum for all of them).
// Each head's operations are those of one head alone, in the same order; the heads are
// interleaved phase by phase so that their dependency chains overlap, and a value row
// loaded once serves every head (H * D accumulators in registers). Value row j prefetches
// pf[j] while j < n_pf.
template <int D, int H, int C>
inline void FoldScores(__m512 (*s)[C], const float* V, int64_t n, __mmask16 live, float scale, float offset,
                       float* states, int64_t state_stride, const char* const* pf, int64_t n_pf) {
  static_assert(C == 1 || C == 2);
  constexpr int64_t hd = 16 * D;
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  float m_new[H];
  alignas(64) float red[16];
  __m512 mx[H];  // lane-wise maximum over the chunks, dead lanes -inf
  #pragma GCC unroll 8
  for (int h = 0; h < H; ++h) {
    #pragma GCC unroll 2
    for (int c = 0; c < C; ++c) {
      s[h][c] = _mm512_mul_ps(s[h][c], _mm512_set1_ps(scale));
      if (offset != 0.0f) s[h][c] = _mm512_add_ps(s[h][c], _mm512_set1_ps(offset));
    }
    mx[h] = _mm512_mask_mov_ps(ninf, live, s[h][C - 1]);
    if constexpr (C == 2) mx[h] = _mm512_max_ps(s[h][0], mx[h]);
  }
  if constexpr (H == 4) _mm512_store_ps(red, Reduce4(mx, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); }));
  #pragma GCC unroll 8
  for (int h = 0; h < H; ++h) {
    const float bmax = H == 4 ? red[4 * h] : _mm512_reduce_max_ps(mx[h]);
    const float m_old = states[h * state_stride];
    m_new[h] = m_old > bmax ? m_old : bmax;
  }
  for (int h = 0; h < H; ++h) {
    float* st = states + h * state_stride;
    if (m_new[h] > st[0]) {
      // No subnormal factor (kernels/exp_floor.h): what it would scale is below the new
      // sum's resolution.
      const float c = st[0] - m_new[h] < kExpFloor ? 0.0f : std::exp(st[0] - m_new[h]);
      st[1] *= c;
      const __m512 cv = _mm512_set1_ps(c);
      #pragma GCC unroll 16
      for (int i = 0; i < D; ++i) _mm512_storeu_ps(st + 2 + 16 * i, _mm512_mul_ps(_mm512_loadu_ps(st + 2 + 16 * i), cv));
      st[0] = m_new[h];
    }
  }
  alignas(64) float w[H][16 * C];
  __m512 p[H];  // per head the chunks' weights added lane by lane, for the sum
  #pragma GCC unroll 8
  for (int h = 0; h < H; ++h) {
    const __m512 m = _mm512_set1_ps(m_new[h]);
    #pragma GCC unroll 2
    for (int c = 0; c < C; ++c) {
      __m512 e = Exp512(_mm512_sub_ps(s[h][c], m));
      if (c == C - 1) e = _mm512_maskz_mov_ps(live, e);
      _mm512_store_ps(w[h] + 16 * c, e);
      p[h] = c == 0 ? e : _mm512_add_ps(p[h], e);
    }
  }
  if constexpr (H == 4) {
    _mm512_store_ps(red, Reduce4(p, [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); }));
    #pragma GCC unroll 4
    for (int h = 0; h < 4; ++h) states[h * state_stride + 1] += red[4 * h];
  } else {
    #pragma GCC unroll 8
    for (int h = 0; h < H; ++h) states[h * state_stride + 1] += _mm512_reduce_add_ps(p[h]);
  }
  __m512 av[H][D];
  #pragma GCC unroll 8
  for (int h = 0; h < H; ++h)
    #pragma GCC unroll 16
    for (int i = 0; i < D; ++i) av[h][i] = _mm512_loadu_ps(states + h * state_stride + 2 + 16 * i);
  AccumulateWeightedRows<H, D>(av, &w[0][0], 16 * C, V, hd, n, pf, n_pf);
  #pragma GCC unroll 8
  for (int h = 0; h < H; ++h)
    #pragma GCC unroll 16
    for (int i = 0; i < D; ++i) _mm512_storeu_ps(states + h * state_stride + 2 + 16 * i, av[h][i]);
}

// One fold step over n keys in C chunks of 16 (n <= 16 C; C = 2: n > 16, the second
// chunk's keys at Kt + 16 hd, its values at V + 16 hd). Scores for kScore heads at a time
// (16 accumulators), folded kGroup heads at a time (as many as keep the value accumulators
// in registers); the heads left over in smaller groups, the same operations per head. The
// prefetches pf[0..n_pf) go out one per score-loop iteration and value row, in order, the
// rest at the end: spread over the step, not in a burst that would stall it on the
// line-fill buffers.
template <int D, int C>
void ChunkT(const float* q, int64_t G, const float* Kt, const float* V, int64_t n, float scale, float* states,
            int64_t state_stride, float offset, const char* const* pf, int64_t n_pf) {
  constexpr int64_t hd = 16 * D;
  constexpr int kGroup = D <= 4 ? 4 : D <= 8 ? 2 : 1;
  constexpr int kScore = 16 / C;  // a multiple of kGroup
  const int64_t last = n - 16 * (C - 1);  // keys in the last chunk
  const __mmask16 live = last >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << last) - 1);
  // The next k prefetch slots: where they start, and how many of them have a line.
  auto take = [&](int64_t k, int64_t* m) {
    const char* const* p = pf;
    *m = std::min(k, n_pf);
    pf += *m;
    n_pf -= *m;
    return p;
  };
  int64_t h = 0, m = 0;
  for (; h + kScore <= G; h += kScore) {
    __m512 sc[kScore][C];
    const char* const* p = take(hd, &m);
    ScoresT<D, kScore, C>(q + h * hd, hd, Kt, sc, p, m);
    for (int j = 0; j < kScore; j += kGroup) {
      p = take(n, &m);
      FoldScores<D, kGroup, C>(sc + j, V, n, live, scale, offset, states + (h + j) * state_stride, state_stride, p, m);
    }
  }
  for (; h + kGroup <= G; h += kGroup) {
    __m512 sc[kGroup][C];
    const char* const* p = take(hd, &m);
    ScoresT<D, kGroup, C>(q + h * hd, hd, Kt, sc, p, m);
    p = take(n, &m);
    FoldScores<D, kGroup, C>(sc, V, n, live, scale, offset, states + h * state_stride, state_stride, p, m);
  }
  for (; h < G; ++h) {
    __m512 sc[1][C];
    const char* const* p = take(hd, &m);
    ScoresT<D, 1, C>(q + h * hd, hd, Kt, sc, p, m);
    p = take(n, &m);
    FoldScores<D, 1, C>(sc, V, n, live, scale, offset, states + h * state_stride, state_stride, p, m);
  }
  for (; n_pf > 0; --n_pf) _mm_prefetch(*pf++, _MM_HINT_T0);
}

// 16 x 16 floats: rows r[i] in, columns out (out[c] lane i = r[i] lane c).
inline void Transpose16x16(__m512 (&r)[16]) {
  __m512 lo[8], hi[8];
  #pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    lo[k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);  // lane L: columns 4L, 4L+1 of rows 2k, 2k+1
    hi[k] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);  // columns 4L+2, 4L+3
  }
  // c[k][m], lane L: column 4L + m of rows 4k..4k+3.
  __m512 c[4][4];
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m512d l0 = _mm512_castps_pd(lo[2 * k]), l1 = _mm512_castps_pd(lo[2 * k + 1]);
    const __m512d h0 = _mm512_castps_pd(hi[2 * k]), h1 = _mm512_castps_pd(hi[2 * k + 1]);
    c[k][0] = _mm512_castpd_ps(_mm512_unpacklo_pd(l0, l1));
    c[k][1] = _mm512_castpd_ps(_mm512_unpackhi_pd(l0, l1));
    c[k][2] = _mm512_castpd_ps(_mm512_unpacklo_pd(h0, h1));
    c[k][3] = _mm512_castpd_ps(_mm512_unpackhi_pd(h0, h1));
  }
  #pragma GCC unroll 4
  for (int m = 0; m < 4; ++m) {
    const __m512 x0 = _mm512_shuffle_f32x4(c[0][m], c[1][m], 0x44), x1 = _mm512_shuffle_f32x4(c[0][m], c[1][m], 0xEE);
    const __m512 y0 = _mm512_shuffle_f32x4(c[2][m], c[3][m], 0x44), y1 = _mm512_shuffle_f32x4(c[2][m], c[3][m], 0xEE);
    r[m] = _mm512_shuffle_f32x4(x0, y0, 0x88);
    r[4 + m] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
    r[8 + m] = _mm512_shuffle_f32x4(x1, y1, 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
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

void ExpRowAvx512(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, Exp512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

bool DecodeKeysTAvx512(GgmlType type, const uint8_t* head, int64_t block_size, int64_t lo, int64_t n, int64_t hd,
                       float* Kt) {
  if (hd % 16 != 0 || (type != GgmlType::kF16 && type != GgmlType::kBF16)) return false;
  const auto* e = reinterpret_cast<const uint16_t*>(head);
  for (int64_t c = 0; c < n; c += 16) {
    const int64_t m = n - c < 16 ? n - c : 16;
    const __mmask16 live = m == 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << m) - 1);
    const uint16_t* src = e + lo + c;
    float* dst = Kt + c * hd;
    if (type == GgmlType::kF16) {
      for (int64_t d = 0; d < hd; ++d)
        _mm512_storeu_ps(dst + 16 * d, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, src + d * block_size)));
    } else {
      for (int64_t d = 0; d < hd; ++d)
        _mm512_storeu_ps(dst + 16 * d, _mm512_castsi512_ps(_mm512_slli_epi32(
                                           _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(live, src + d * block_size)), 16)));
    }
  }
  return true;
}

void TransposeKeysAvx512(const float* K, int64_t n, int64_t hd, float* Kt) {
  for (int64_t t = 0; t < hd / 16; ++t) {
    __m512 r[16];
    #pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < n ? _mm512_loadu_ps(K + i * hd + 16 * t) : _mm512_setzero_ps();
    Transpose16x16(r);
    #pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(Kt + (16 * t + i) * 16, r[i]);
  }
}

namespace {

// Runs f.template operator()<D>() for the head sizes hd = 16 D the kernels are built for
// (PagedChunkAvx512Supports); false for the others.
template <typename F>
bool ForHeadSize(int64_t hd, F&& f) {
  switch (hd) {
    case 32: f.template operator()<2>(); return true;
    case 64: f.template operator()<4>(); return true;
    case 96: f.template operator()<6>(); return true;
    case 128: f.template operator()<8>(); return true;
    case 256: f.template operator()<16>(); return true;
    default: return false;
  }
}

}  // namespace

bool PagedChunkTAvx512(const float* q, int64_t G, int64_t hd, float scale, const float* Kt, const float* V, int64_t n,
                       float* states, int64_t state_stride, float offset, const char* const* pf, int64_t n_pf) {
  if (n <= 0 || n > 16) return false;
  return ForHeadSize(hd, [&]<int D>() { ChunkT<D, 1>(q, G, Kt, V, n, scale, states, state_stride, offset, pf, n_pf); });
}

bool PagedChunkT2Avx512(const float* q, int64_t G, int64_t hd, float scale, const float* Kt, const float* V, int64_t n,
                        float* states, int64_t state_stride, float offset, const char* const* pf, int64_t n_pf) {
  if (n <= 16 || n > 32) return false;
  return ForHeadSize(hd, [&]<int D>() { ChunkT<D, 2>(q, G, Kt, V, n, scale, states, state_stride, offset, pf, n_pf); });
}

bool PagedChunkAvx512(const float* q, int64_t G, int64_t hd, float scale, const float* K, const float* V, int64_t n,
                      float* states, int64_t state_stride, float offset) {
  if (n <= 0 || n > 16 || !PagedChunkAvx512Supports(hd)) return false;
  alignas(64) float kt[16 * 256];
  TransposeKeysAvx512(K, n, hd, kt);
  return PagedChunkTAvx512(q, G, hd, scale, kt, V, n, states, state_stride, offset);
}

}  // namespace tierlm
