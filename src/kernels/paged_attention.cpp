#include "kernels/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/exp_floor.h"
#include "kernels/paged_attention_internal.h"
#include "kernels/quant.h"

namespace tierlm {

int64_t PagedNextStepLines(const kv::PagedKvLayer& kv, const PagedQuery& row, int64_t bi, int64_t k1, int64_t g,
                           const char** lines) {
  const int64_t B = kv.block_size, per_step = B == 16 ? 2 : 1;
  int64_t n = 0;
  for (int64_t b = bi; b < bi + per_step && b * B < k1; ++b) {
    if (row.Skips(b, g)) continue;
    const uint8_t* block = kv.blocks[row.blocks[b]];
    if (!block) continue;
    const uint8_t* run[2] = {block + g * kv.k_head_stride, block + kv.v_offset + g * kv.v_head_stride};
    const int64_t bytes[2] = {B * kv.k_pos_bytes, B * kv.v_pos_bytes};
    for (int r = 0; r < 2; ++r) {
      const uintptr_t first = reinterpret_cast<uintptr_t>(run[r]) & ~uintptr_t{63};
      const uintptr_t end = reinterpret_cast<uintptr_t>(run[r]) + static_cast<uintptr_t>(bytes[r]);
      for (uintptr_t a = first; a < end && n < kPagedMaxStepLines; a += 64) lines[n++] = reinterpret_cast<const char*>(a);
    }
  }
  return n;
}

namespace {

// Running state of one head over one span of keys.
struct Partial {
  float m;  // maximum score so far (-inf: no key yet)
  float l;  // sum of exp(score - m)
};

// Rows of head `g` for positions [lo, hi) of one block, as f32: a pointer into the block
// when the type is f32, else decoded into `buf`. Returns the row stride in floats.
const float* HeadRows(const uint8_t* rows, int64_t pos_bytes, int64_t head_stride, GgmlType type, int64_t g,
                      int64_t lo, int64_t hi, int64_t hd, std::vector<float>& buf, int64_t* stride) {
  if (type == GgmlType::kF32) {
    *stride = pos_bytes / static_cast<int64_t>(sizeof(float));
    return reinterpret_cast<const float*>(rows + g * head_stride + lo * pos_bytes);
  }
  if (static_cast<int64_t>(buf.size()) < (hi - lo) * hd) buf.resize(static_cast<size_t>((hi - lo) * hd));
  for (int64_t p = lo; p < hi; ++p) DequantizeRow(type, rows + g * head_stride + p * pos_bytes, buf.data() + (p - lo) * hd, hd);
  *stride = hd;
  return buf.data();
}

// Empty running states (no key yet) of G heads: {max -inf, sum 0, hd zeros} each.
void ResetStates(float* P, int64_t G, int64_t hd) {
  for (int64_t h = 0; h < G; ++h) {
    float* st = P + h * (2 + hd);
    st[0] = -INFINITY;
    st[1] = 0;
    std::fill_n(st + 2, hd, 0.0f);
  }
}

// KV head g's keys and values at positions [lo, lo + n) of one block as f32 (AVX-512
// conversion where it has one, else the reference decoder): values as rows of hd into vbuf,
// keys transposed 16 at a time into kbuf (TransposeKeysAvx512: keys c..c+15 at c * hd, one
// lane per key, zeros past n), as PagedChunkTAvx512 takes them; both from key `at` of the
// buffers on (a multiple of 16: a second block decoded beside the first).
void DecodeBlockHead(const kv::PagedKvLayer& kv, const uint8_t* block, int64_t lo, int64_t n, int64_t g, int64_t hd,
                     std::vector<float>& kbuf, std::vector<float>& vbuf, int64_t at = 0) {
  static thread_local std::vector<float> krows_f32;
  const int64_t n16 = (n + 15) / 16 * 16;
  if (static_cast<int64_t>(kbuf.size()) < (at + n16) * hd) kbuf.resize(static_cast<size_t>((at + n16) * hd));
  if (static_cast<int64_t>(krows_f32.size()) < n * hd) krows_f32.resize(static_cast<size_t>(n * hd));
  if (static_cast<int64_t>(vbuf.size()) < (at + n) * hd) vbuf.resize(static_cast<size_t>((at + n) * hd));
  float* kt = kbuf.data() + at * hd;
  float* vr = vbuf.data() + at * hd;
  const uint8_t* vrows = block + kv.v_offset + g * kv.v_head_stride + lo * kv.v_pos_bytes;
  if (kv.k_transposed) {
    // Transposed keys are f16 or bf16 and this path's head sizes are multiples of 16, the
    // two things DecodeKeysTAvx512 needs.
    if (!DecodeKeysTAvx512(kv.k_type, block + g * kv.k_head_stride, kv.block_size, lo, n, hd, kt)) std::abort();
  } else {
    const uint8_t* krows = block + g * kv.k_head_stride + lo * kv.k_pos_bytes;
    if (!DecodeHeadRowsAvx512(kv.k_type, krows, kv.k_pos_bytes, n, hd, krows_f32.data()))
      for (int64_t p = 0; p < n; ++p) DequantizeRow(kv.k_type, krows + p * kv.k_pos_bytes, krows_f32.data() + p * hd, hd);
    for (int64_t c = 0; c < n; c += 16)
      TransposeKeysAvx512(krows_f32.data() + c * hd, std::min<int64_t>(16, n - c), hd, kt + c * hd);
  }
  if (!DecodeHeadRowsAvx512(kv.v_type, vrows, kv.v_pos_bytes, n, hd, vr))
    for (int64_t p = 0; p < n; ++p) DequantizeRow(kv.v_type, vrows + p * kv.v_pos_bytes, vr + p * hd, hd);
}

// Folds keys [0, n) of decoded buffers (DecodeBlockHead) into the G heads' states P: one
// softmax step per 32 keys from the buffers' start (the last step over what is left). The
// first step also prefetches pf[0..n_pf) (PagedNextStepLines).
void FoldDecoded(const float* qg, int64_t G, int64_t hd, float scale, const float* kbuf, const float* vbuf, int64_t n,
                 float* P, int64_t part, const char* const* pf = nullptr, int64_t n_pf = 0) {
  for (int64_t c = 0; c < n; c += 32) {
    if (n - c > 16)
      PagedChunkT2Avx512(qg, G, hd, scale, kbuf + c * hd, vbuf + c * hd, std::min<int64_t>(32, n - c), P, part, 0.0f,
                         pf, n_pf);
    else
      PagedChunkTAvx512(qg, G, hd, scale, kbuf + c * hd, vbuf + c * hd, n - c, P, part, 0.0f, pf, n_pf);
    n_pf = 0;
  }
}

// Folds a skipped block of n keys into the running states of KV head g's G query heads as
// one key: its mean key (sums / n) with score + ln n, and its mean value.
void FoldMean(const float* qg, int64_t G, int64_t hd, float scale, const float* sums, int64_t n, float* P,
              int64_t part) {
  const float inv = 1.0f / static_cast<float>(n), ln = std::log(static_cast<float>(n));
  for (int64_t h = 0; h < G; ++h) {
    const float* qh = qg + h * hd;
    float dot = 0;
    for (int64_t i = 0; i < hd; ++i) dot += qh[i] * sums[i];
    const float sc = dot * inv * scale + ln;
    float* st = P + h * part;
    float* acc = st + 2;
    const float m_new = std::max(st[0], sc);
    if (m_new > st[0]) {
      const float c = st[0] - m_new < kExpFloor ? 0.0f : std::exp(st[0] - m_new);
      st[1] *= c;
      for (int64_t i = 0; i < hd; ++i) acc[i] *= c;
      st[0] = m_new;
    }
    const float w = sc - m_new < kExpFloor ? 0.0f : std::exp(sc - m_new);
    st[1] += w;
    for (int64_t i = 0; i < hd; ++i) acc[i] += w * inv * sums[hd + i];
  }
}

}  // namespace

void PagedAttention(const AttentionShape& s, const kv::PagedKvLayer& kv, std::span<const PagedQuery> rows,
                    const float* q, float* out, ThreadPool* pool) {
  const int64_t hd = s.head_dim;
  const int64_t G = s.n_head / s.n_head_kv;
  const int64_t q_stride = s.n_head * hd;
  const int64_t B = kv.block_size;
  const int64_t S = kPagedSplitKeys;
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  // Per head of a group: m, l, then hd accumulated values.
  const int64_t part = 2 + hd;
  // The AVX-512 path takes keys 16 at a time (any block size); head sizes it has no kernel
  // for stay on the portable loops.
  const bool avx512 = UsesAvx512(ActiveKernelPath()) && PagedChunkAvx512Supports(hd);
  // 16-position blocks are folded two at a time (one softmax step of up to 32 keys) where
  // the first is whole within [.., k1) and the next is read: the second's keys decoded after
  // the first's. A row folds the same steps whether alone or in a tile (a tile's k1 only
  // reaches further than a row's where the row has no keys left).
  auto pairs_next = [&](const PagedQuery& row, int64_t bi, int64_t n, int64_t k1, int64_t g) {
    return B == 16 && n == 16 && (bi + 1) * B < k1 && !row.Skips(bi + 1, g);
  };
  auto n_spans = [&](int64_t r) { return std::max<int64_t>(1, (rows[static_cast<size_t>(r)].n_keys + S - 1) / S); };

  // The running states of KV head g's G query heads of row r over one span of keys, from zero.
  // next_g >= 0: KV head next_g's pass over the same span follows (its first step's lines
  // are prefetched during this pass's last).
  auto span_state = [&](int64_t r, int64_t g, int64_t span, float* P, std::vector<float>& kbuf,
                        std::vector<float>& vbuf, std::vector<float>& scores, int64_t next_g = -1) {
    const PagedQuery& row = rows[static_cast<size_t>(r)];
    const int64_t k0 = span * S, k1 = std::min(row.n_keys, k0 + S);
    ResetStates(P, G, hd);
    if (static_cast<int64_t>(scores.size()) < B) scores.resize(static_cast<size_t>(B));
    // AVX-512: skipped blocks' means gathered 16 at a time, folded with the weight of
    // their size as an offset (ln B) to their scores, after the span's read keys.
    static thread_local std::vector<float> mean_k, mean_v;
    int64_t n_means = 0;
    const float* qg_row = q + r * q_stride + g * G * hd;
    auto flush_means = [&] {
      if (n_means > 0)
        PagedChunkAvx512(qg_row, G, hd, s.scale, mean_k.data(), mean_v.data(), n_means, P, part,
                         std::log(static_cast<float>(B)));
      n_means = 0;
    };
    for (int64_t bi = k0 / B, nb = 1; bi * B < k1; bi += nb) {
      nb = 1;
      if (row.Skips(bi, g)) {
        if (!row.mean_skipped || !kv.block_sums || (bi + 1) * B > row.n_keys) continue;
        const float* sums = kv.block_sums + (row.blocks[bi] * s.n_head_kv + g) * 2 * hd;
        if (!avx512) {
          FoldMean(qg_row, G, hd, s.scale, sums, B, P, part);
          continue;
        }
        if (mean_k.size() < static_cast<size_t>(16 * hd)) mean_k.resize(static_cast<size_t>(16 * hd));
        if (mean_v.size() < static_cast<size_t>(16 * hd)) mean_v.resize(static_cast<size_t>(16 * hd));
        const float inv = 1.0f / static_cast<float>(B);
        for (int64_t i = 0; i < hd; ++i) {
          mean_k[static_cast<size_t>(n_means * hd + i)] = sums[i] * inv;
          mean_v[static_cast<size_t>(n_means * hd + i)] = sums[hd + i] * inv;
        }
        if (++n_means == 16) flush_means();
        continue;
      }
      const int64_t lo = std::max(k0, bi * B) - bi * B, hi = std::min(k1, (bi + 1) * B) - bi * B;
      const uint8_t* block = kv.blocks[row.blocks[bi]];
      if (avx512) {
        const int64_t n = hi - lo;
        DecodeBlockHead(kv, block, lo, n, g, hd, kbuf, vbuf);
        int64_t nk = n;
        if (pairs_next(row, bi, n, k1, g)) {
          const int64_t n2 = std::min(k1, (bi + 2) * B) - (bi + 1) * B;
          DecodeBlockHead(kv, kv.blocks[row.blocks[bi + 1]], 0, n2, g, hd, kbuf, vbuf, 16);
          nk += n2;
          nb = 2;
        }
        const char* lines[kPagedMaxStepLines];
        const int64_t n_lines = (bi + nb) * B < k1 || next_g < 0
                                    ? PagedNextStepLines(kv, row, bi + nb, k1, g, lines)
                                    : PagedNextStepLines(kv, row, k0 / B, k1, next_g, lines);
        FoldDecoded(q + r * q_stride + g * G * hd, G, hd, s.scale, kbuf.data(), vbuf.data(), nk, P, part, lines,
                    n_lines);
        continue;
      }
      int64_t ks = 0, vs = 0;
      const float* K = nullptr;
      if (kv.k_transposed) {  // decoded position by position into kbuf
        if (static_cast<int64_t>(kbuf.size()) < (hi - lo) * hd) kbuf.resize(static_cast<size_t>((hi - lo) * hd));
        for (int64_t p = lo; p < hi; ++p) kv::DequantizeKey(kv, block, g, p, hd, kbuf.data() + (p - lo) * hd);
        K = kbuf.data();
        ks = hd;
      } else {
        K = HeadRows(block, kv.k_pos_bytes, kv.k_head_stride, kv.k_type, g, lo, hi, hd, kbuf, &ks);
      }
      const float* V = HeadRows(block + kv.v_offset, kv.v_pos_bytes, kv.v_head_stride, kv.v_type, g, lo, hi, hd, vbuf, &vs);
      for (int64_t h = 0; h < G; ++h) {
        const float* qh = q + r * q_stride + (g * G + h) * hd;
        float* st = P + h * part;
        float* acc = st + 2;
        float bmax = -INFINITY;
        for (int64_t p = 0; p < hi - lo; ++p) {
          const float* kp = K + p * ks;
          float dot = 0;
          for (int64_t i = 0; i < hd; ++i) dot += qh[i] * kp[i];
          scores[static_cast<size_t>(p)] = dot * s.scale;
          bmax = std::max(bmax, scores[static_cast<size_t>(p)]);
        }
        const float m_new = std::max(st[0], bmax);
        if (m_new > st[0]) {  // rescale what was accumulated under the old maximum
          const float c = st[0] - m_new < kExpFloor ? 0.0f : std::exp(st[0] - m_new);
          st[1] *= c;
          for (int64_t i = 0; i < hd; ++i) acc[i] *= c;
          st[0] = m_new;
        }
        for (int64_t p = 0; p < hi - lo; ++p) {
          const float d = scores[static_cast<size_t>(p)] - m_new;
          const float w = d < kExpFloor ? 0.0f : std::exp(d);
          st[1] += w;
          const float* vp = V + p * vs;
          for (int64_t i = 0; i < hd; ++i) acc[i] += w * vp[i];
        }
      }
    }
    flush_means();
  };

  // Head h of group g of row r from its spans' states, merged in span order. Both ways of
  // sharing the work below call this with the same states, so they give the same bits.
  auto merge = [&](int64_t r, int64_t g, int64_t h, int64_t spans, const float* states, int64_t span_stride) {
    float* o = out + r * q_stride + (g * G + h) * hd;
    float M = -INFINITY;
    for (int64_t j = 0; j < spans; ++j) M = std::max(M, states[j * span_stride + h * part]);
    std::fill_n(o, hd, 0.0f);
    if (M == -INFINITY) return;  // every key skipped
    float L = 0;
    for (int64_t j = 0; j < spans; ++j) {
      const float* st = states + j * span_stride + h * part;
      // A span whose maximum is below the floor adds nothing the sums can resolve, and its
      // factor would be subnormal (kernels/exp_floor.h).
      if (st[0] == -INFINITY || st[0] - M < kExpFloor) continue;
      const float c = std::exp(st[0] - M);
      L += st[1] * c;
      for (int64_t i = 0; i < hd; ++i) o[i] += st[2 + i] * c;
    }
    const float inv = 1.0f / L;
    for (int64_t i = 0; i < hd; ++i) o[i] *= inv;
  };

  const int n_threads = pool ? pool->size() : 1;
  if (avx512 && n_rows * s.n_head_kv >= 4 * n_threads) {
    // Many rows on AVX-512: consecutive rows of one sequence (prefill) form tiles of up to
    // kTile rows that decode each block's keys and values once for all of them. Each row
    // still folds in the same chunks of the same keys in the same order as alone.
    constexpr int64_t kTile = 16;
    std::vector<int64_t> tile_start;
    for (int64_t r = 0; r < n_rows; ++r) {
      const PagedQuery& a = rows[static_cast<size_t>(r)];
      const bool same = !tile_start.empty() && r - tile_start.back() < kTile &&
                        rows[static_cast<size_t>(tile_start.back())].blocks == a.blocks &&
                        rows[static_cast<size_t>(tile_start.back())].skip == a.skip;
      if (!same) tile_start.push_back(r);
    }
    const int64_t n_tiles = static_cast<int64_t>(tile_start.size());
    tile_start.push_back(n_rows);
    auto units = [&](int64_t begin, int64_t end) {
      static thread_local std::vector<float> kbuf, vbuf, states;
      for (int64_t u = begin; u < end; ++u) {
        const int64_t tile = u / s.n_head_kv, g = u % s.n_head_kv;
        const int64_t r0 = tile_start[static_cast<size_t>(tile)], r1 = tile_start[static_cast<size_t>(tile) + 1];
        int64_t max_keys = 0, max_spans = 0;
        for (int64_t r = r0; r < r1; ++r) {
          max_keys = std::max(max_keys, rows[static_cast<size_t>(r)].n_keys);
          max_spans = std::max(max_spans, n_spans(r));
        }
        const int64_t row_stride = max_spans * G * part;
        if (static_cast<int64_t>(states.size()) < (r1 - r0) * row_stride)
          states.resize(static_cast<size_t>((r1 - r0) * row_stride));
        const PagedQuery& first = rows[static_cast<size_t>(r0)];
        for (int64_t j = 0; j < max_spans; ++j) {
          for (int64_t r = r0; r < r1; ++r) {
            if (j >= n_spans(r)) continue;
            ResetStates(states.data() + (r - r0) * row_stride + j * G * part, G, hd);
          }
          const int64_t k0 = j * S, k1 = std::min(max_keys, k0 + S);
          for (int64_t bi = k0 / B, nb = 1; bi * B < k1; bi += nb) {
            nb = 1;
            if (first.Skips(bi, g)) {
              for (int64_t r = r0; r < r1; ++r) {
                const PagedQuery& row = rows[static_cast<size_t>(r)];
                if (j >= n_spans(r) || !row.mean_skipped || !kv.block_sums || (bi + 1) * B > row.n_keys) continue;
                FoldMean(q + r * q_stride + g * G * hd, G, hd, s.scale,
                         kv.block_sums + (row.blocks[bi] * s.n_head_kv + g) * 2 * hd, B,
                         states.data() + (r - r0) * row_stride + j * G * part, part);
              }
              continue;
            }
            const int64_t lo = std::max(k0, bi * B) - bi * B, hi = std::min(k1, (bi + 1) * B) - bi * B;
            const int64_t n = hi - lo;
            DecodeBlockHead(kv, kv.blocks[first.blocks[bi]], lo, n, g, hd, kbuf, vbuf);
            if (pairs_next(first, bi, n, k1, g)) {
              DecodeBlockHead(kv, kv.blocks[first.blocks[bi + 1]], 0, std::min(k1, (bi + 2) * B) - (bi + 1) * B, g, hd,
                              kbuf, vbuf, 16);
              nb = 2;
            }
            // The next step's lines (the next span's first step after a span's last: this
            // unit goes on with it), prefetched during the first row's fold.
            const char* lines[kPagedMaxStepLines];
            int64_t n_lines = PagedNextStepLines(kv, first, bi + nb, max_keys, g, lines);
            for (int64_t r = r0; r < r1; ++r) {
              const int64_t kr = std::min(rows[static_cast<size_t>(r)].n_keys, k0 + S);
              const int64_t nr = std::min(kr, (bi + nb) * B) - bi * B - lo;  // this row's keys in the blocks
              if (j >= n_spans(r) || nr <= 0) continue;
              FoldDecoded(q + r * q_stride + g * G * hd, G, hd, s.scale, kbuf.data(), vbuf.data(), nr,
                          states.data() + (r - r0) * row_stride + j * G * part, part, lines, n_lines);
              n_lines = 0;
            }
          }
        }
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t h = 0; h < G; ++h) merge(r, g, h, n_spans(r), states.data() + (r - r0) * row_stride, G * part);
      }
    };
    if (pool) pool->ParallelForDynamic(n_tiles * s.n_head_kv, 1, units);
    else units(0, n_tiles * s.n_head_kv);
    return;
  }
  if (n_rows * s.n_head_kv >= 4 * n_threads) {
    // Many rows (prefill, big batches): a unit is a (row, KV head), all of its spans in a
    // buffer of the thread's own; no shared scratch grows with the batch.
    auto units = [&](int64_t begin, int64_t end) {
      static thread_local std::vector<float> kbuf, vbuf, scores, states;
      for (int64_t u = begin; u < end; ++u) {
        const int64_t r = u / s.n_head_kv, g = u % s.n_head_kv, spans = n_spans(r);
        if (static_cast<int64_t>(states.size()) < spans * G * part) states.resize(static_cast<size_t>(spans * G * part));
        for (int64_t j = 0; j < spans; ++j) span_state(r, g, j, states.data() + j * G * part, kbuf, vbuf, scores);
        for (int64_t h = 0; h < G; ++h) merge(r, g, h, spans, states.data(), G * part);
      }
    };
    if (pool) pool->ParallelForDynamic(n_rows * s.n_head_kv, 1, units);
    else units(0, n_rows * s.n_head_kv);
    return;
  }
  // Few rows (decode): a unit is a (row, span) with every KV head, one after the other over
  // the span's blocks (which stay in L2 between the heads' passes, and are read a page at a
  // time instead of one head's 2 KiB of a block: 8-10% faster from DRAM on an Ice Lake Xeon),
  // or, where there are too few spans to share out evenly, a (row, KV head, span); so one
  // long row still uses every thread. The states meet in a shared buffer and are merged
  // after. Either way each (row, KV head, span) state is computed alone: the same bits.
  std::vector<int64_t> first_state(static_cast<size_t>(n_rows) + 1, 0);
  for (int64_t r = 0; r < n_rows; ++r)
    first_state[static_cast<size_t>(r) + 1] = first_state[static_cast<size_t>(r)] + n_spans(r) * s.n_head_kv;
  const int64_t n_states = first_state.back();
  const bool whole_spans = n_states / s.n_head_kv >= 4 * n_threads;
  // State (r, g, span) at first_state[r] + g * spans + span: a row's KV head's spans adjacent.
  std::vector<float> partials(static_cast<size_t>(n_states * G * part));
  auto units = [&](int64_t begin, int64_t end) {
    static thread_local std::vector<float> kbuf, vbuf, scores;
    for (int64_t u = begin; u < end; ++u) {
      if (!whole_spans) {
        const int64_t r = std::upper_bound(first_state.begin(), first_state.end(), u) - first_state.begin() - 1;
        const int64_t local = u - first_state[static_cast<size_t>(r)], spans = n_spans(r);
        span_state(r, local / spans, local % spans, partials.data() + u * G * part, kbuf, vbuf, scores);
        continue;
      }
      // Unit u: span u - (spans of the rows before r) of row r.
      const int64_t r =
          std::upper_bound(first_state.begin(), first_state.end(), u * s.n_head_kv) - first_state.begin() - 1;
      const int64_t first = first_state[static_cast<size_t>(r)], span = u - first / s.n_head_kv, spans = n_spans(r);
      for (int64_t g = 0; g < s.n_head_kv; ++g)
        span_state(r, g, span, partials.data() + (first + g * spans + span) * G * part, kbuf, vbuf, scores,
                   g + 1 < s.n_head_kv ? g + 1 : -1);
    }
  };
  const int64_t n_units = whole_spans ? n_states / s.n_head_kv : n_states;
  if (pool) pool->ParallelForDynamic(n_units, 1, units);
  else units(0, n_units);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t g = 0; g < s.n_head_kv; ++g)
      for (int64_t h = 0; h < G; ++h)
        merge(r, g, h, n_spans(r), partials.data() + (first_state[static_cast<size_t>(r)] + g * n_spans(r)) * G * part,
              G * part);
}

}  // namespace tierlm
