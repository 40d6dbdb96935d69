#include "kernels/attention_mass.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/quant.h"

namespace tierlm {

void AddAttentionBlockMass(const AttentionShape& s, const kv::PagedKvLayer& kv, std::span<const PagedQuery> rows,
                           const uint8_t* active, const float* q, double* mass, int64_t stride, ThreadPool* pool,
                           bool by_kv_head) {
  const int64_t hd = s.head_dim, G = s.n_head / s.n_head_kv, B = kv.block_size;
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  // Where KV head g of row r adds.
  auto dest = [&](int64_t r, int64_t g) { return mass + (by_kv_head ? r * s.n_head_kv + g : r) * stride; };
  std::vector<int64_t> act;
  for (int64_t r = 0; r < n_rows; ++r)
    if (active[r] && rows[static_cast<size_t>(r)].n_keys > 0) act.push_back(r);
  if (act.empty()) return;
  // Many rows: a unit is a row (all its KV heads), adding to its own row of mass. Few rows
  // (decode): a unit is a (row, KV head) with block sums of its own, added to mass in unit
  // order after. Either way no two threads add to one place, and each row's sums are the
  // same bits whatever the thread count or the batch.
  const int n_threads = pool ? pool->size() : 1;
  const bool by_row = static_cast<int64_t>(act.size()) >= 2 * n_threads;
  const int64_t per = by_row ? 1 : s.n_head_kv;
  const int64_t n = static_cast<int64_t>(act.size()) * per;
  std::vector<double> part(by_row ? 0 : static_cast<size_t>(n * stride), 0.0);
  // KV head g of row r: its G query heads' probabilities, summed per block into out.
  auto head = [&](int64_t r, int64_t g, double* out, std::vector<float>& key, std::vector<float>& score) {
    const PagedQuery& row = rows[static_cast<size_t>(r)];
    const int64_t nk = row.n_keys, nb = (nk + B - 1) / B;
    score.assign(static_cast<size_t>(G * nk), -INFINITY);
    for (int64_t b = 0; b < nb; ++b) {
      if (row.Skips(b, g)) continue;
      const uint8_t* block = kv.blocks[row.blocks[b]];
      for (int64_t p = b * B; p < std::min(nk, (b + 1) * B); ++p) {
        kv::DequantizeKey(kv, block, g, p - b * B, hd, key.data());
        for (int64_t h = 0; h < G; ++h) {
          const float* qh = q + r * s.n_head * hd + (g * G + h) * hd;
          // Eight running sums (vectorizes without reassociating one).
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int64_t i = 0;
          for (; i + 8 <= hd; i += 8)
            for (int j = 0; j < 8; ++j) acc[j] += qh[i + j] * key[static_cast<size_t>(i + j)];
          float dot = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
          for (; i < hd; ++i) dot += qh[i] * key[static_cast<size_t>(i)];
          score[static_cast<size_t>(h * nk + p)] = dot * s.scale;
        }
      }
    }
    for (int64_t h = 0; h < G; ++h) {
      float* sc = score.data() + h * nk;
      const float m = *std::max_element(sc, sc + nk);
      if (m == -INFINITY) continue;  // every key skipped
      // exp once per key (in f32: each term is in (0, 1]), summed in f64.
      double sum = 0;
      for (int64_t p = 0; p < nk; ++p) {
        const float e = sc[p] == -INFINITY ? 0.0f : std::exp(sc[p] - m);
        sc[p] = e;
        sum += e;
      }
      for (int64_t p = 0; p < nk; ++p) out[p / B] += static_cast<double>(sc[p]) / sum;
    }
  };
  auto run = [&](int64_t begin, int64_t end) {
    std::vector<float> key(static_cast<size_t>(hd)), score;
    std::vector<double> own;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t r = act[static_cast<size_t>(u / per)];
      if (!by_row) {
        head(r, u % per, part.data() + u * stride, key, score);
        continue;
      }
      // The same sums as the other way: each KV head's from zero, added in head order.
      const int64_t nb = (rows[static_cast<size_t>(r)].n_keys + B - 1) / B;
      for (int64_t g = 0; g < s.n_head_kv; ++g) {
        own.assign(static_cast<size_t>(nb), 0.0);
        head(r, g, own.data(), key, score);
        double* d = dest(r, g);
        for (int64_t b = 0; b < nb; ++b) d[b] += own[static_cast<size_t>(b)];
      }
    }
  };
  if (pool) pool->ParallelForDynamic(n, 1, run);
  else run(0, n);
  if (by_row) return;
  for (int64_t u = 0; u < n; ++u) {
    const int64_t r = act[static_cast<size_t>(u / per)];
    const int64_t nb = (rows[static_cast<size_t>(r)].n_keys + B - 1) / B;
    double* d = dest(r, u % per);
    for (int64_t b = 0; b < nb; ++b) d[b] += part[static_cast<size_t>(u * stride + b)];
  }
}

}  // namespace tierlm
