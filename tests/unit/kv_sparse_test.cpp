// Sparse KV retrieval (kv/block_selector.h): block key bounds are the true bounds of what
// the store holds, Quest's block score bounds every key's dot product, selection keeps the
// sinks and the recent window and picks the best-scoring blocks per KV head, attention
// skips per KV head without touching a skipped block's bytes, and a model in quest mode is
// bit-identical to exact whenever the budget covers the context, on any tier.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/block_score.h"
#include "kernels/cpu_features.h"
#include "kernels/paged_attention.h"
#include "kernels/quant.h"
#include "kv/block_selector.h"
#include "kv/kv_block_summaries.h"
#include "kv/paged_kv_store.h"
#include "kv/quest_selector.h"
#include "runtime/engine.h"
#include "test_paths.h"

namespace tierlm {
namespace {

constexpr int64_t kHeadsKv = 2, kHd = 64, kHeads = 8;
constexpr int32_t kBlock = 16;

// A one-layer store of `n_pos` random positions on blocks 0.., summaries on; the decoded keys.
struct Filled {
  kv::PagedKvStore store;
  std::vector<float> k_dec, v_dec;  // [pos][n_head_kv * hd]
};

Filled Fill(GgmlType kt, int64_t n_pos, std::mt19937& rng, int32_t n_blocks = 64, bool sums = false) {
  auto st = kv::PagedKvStore::Create(1, kHeadsKv, kHd, kv::KvFormat{kt, GgmlType::kF32, kBlock}, n_blocks);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  Filled f{std::move(*st), {}, {}};
  f.store.EnableSummaries(sums);
  const int64_t KV = kHeadsKv * kHd;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> k(KV), v(KV);
  std::vector<uint8_t> tmp(KV * 4 + 64);
  for (int64_t p = 0; p < n_pos; ++p) {
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    f.store.Write(0, {static_cast<int32_t>(p / kBlock), static_cast<int32_t>(p % kBlock)}, k.data(), v.data());
    f.k_dec.resize((p + 1) * KV);
    f.v_dec.resize((p + 1) * KV);
    for (int64_t h = 0; h < kHeadsKv; ++h) {
      QuantizeRow(kt, k.data() + h * kHd, tmp.data(), kHd);
      DequantizeRow(kt, tmp.data(), f.k_dec.data() + p * KV + h * kHd, kHd);
      std::copy_n(v.data() + h * kHd, kHd, f.v_dec.data() + p * KV + h * kHd);
    }
  }
  return f;
}

TEST(KvBlockSummariesTest, AreTheBoundsOfTheStoredKeysPerBlockAndHead) {
  for (GgmlType kt : {GgmlType::kF32, GgmlType::kF16, GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    SCOPED_TRACE(std::string(TypeName(kt)));
    std::mt19937 rng(11);
    const int64_t n_pos = 5 * kBlock + 7;  // a partial last block
    Filled f = Fill(kt, n_pos, rng);
    const kv::KvBlockSummaries& s = f.store.summaries();
    ASSERT_TRUE(s.enabled());
    for (int32_t b = 0; b * kBlock < n_pos; ++b)
      for (int64_t g = 0; g < kHeadsKv; ++g) {
        const uint16_t* mn = s.Bounds(0, b, g);
        const uint16_t* mx = mn + kHd;
        for (int64_t i = 0; i < kHd; ++i) {
          float lo = INFINITY, hi = -INFINITY;
          for (int64_t p = b * kBlock; p < std::min<int64_t>(n_pos, (b + 1) * kBlock); ++p) {
            lo = std::min(lo, f.k_dec[p * kHeadsKv * kHd + g * kHd + i]);
            hi = std::max(hi, f.k_dec[p * kHeadsKv * kHd + g * kHd + i]);
          }
          // Halves rounded outward: still bounds, the nearest ones; exact for f16 keys.
          ASSERT_EQ(mn[i], F32ToF16Down(lo)) << "block " << b << " head " << g << " channel " << i;
          ASSERT_EQ(mx[i], F32ToF16Up(hi)) << "block " << b << " head " << g << " channel " << i;
          ASSERT_LE(F16ToF32(mn[i]), lo);
          ASSERT_GE(F16ToF32(mx[i]), hi);
          if (kt == GgmlType::kF16) {
            ASSERT_EQ(F16ToF32(mn[i]), lo);
            ASSERT_EQ(F16ToF32(mx[i]), hi);
          }
        }
      }
    // A copy-on-write copy carries the bounds; reuse from offset 0 starts them afresh.
    ASSERT_TRUE(f.store.CopyBlock(2, 40, kBlock).ok());
    EXPECT_TRUE(std::equal(s.Bounds(0, 2, 0), s.Bounds(0, 2, 0) + 2 * kHd * kHeadsKv, s.Bounds(0, 40, 0)));
    std::vector<float> k(kHeadsKv * kHd, 0.5f), v(kHeadsKv * kHd, 0.0f);
    f.store.Write(0, {40, 0}, k.data(), v.data());
    std::vector<uint8_t> enc(kHd * 4 + 64);
    std::vector<float> dec(kHd);
    QuantizeRow(kt, k.data(), enc.data(), kHd);
    DequantizeRow(kt, enc.data(), dec.data(), kHd);
    for (int64_t i = 0; i < 2 * kHd; ++i)
      EXPECT_EQ(s.Bounds(0, 40, 1)[i], i < kHd ? F32ToF16Down(dec[i]) : F32ToF16Up(dec[i - kHd])) << i;
  }
}

TEST(KvBlockSummariesTest, HalvesRoundedOutwardStayBounds) {
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> u(-70000.0f, 70000.0f);
  std::vector<float> xs = {0.0f, -0.0f, 1.0f / 3, -1.0f / 3, 1e-9f, -1e-9f, 65504.0f, 1e6f, -1e6f, 1.0f, -2.5f};
  for (int i = 0; i < 2000; ++i) xs.push_back(u(rng) * (i % 3 == 0 ? 1e-6f : 1.0f));
  for (float x : xs) {
    const float lo = F16ToF32(F32ToF16Down(x)), hi = F16ToF32(F32ToF16Up(x));
    EXPECT_LE(lo, x) << x;
    EXPECT_GE(hi, x) << x;
    // The nearest such halves: exact when x is a half, else one half apart.
    if (F16ToF32(F32ToF16(x)) == x) {
      EXPECT_EQ(lo, x);
      EXPECT_EQ(hi, x);
    } else if (std::isfinite(lo) && std::isfinite(hi)) {
      // No half between them: the first half above lo is hi.
      EXPECT_EQ(F16ToF32(F32ToF16Up(std::nextafter(lo, INFINITY))), hi) << x;
    }
  }
  EXPECT_TRUE(std::isinf(F16ToF32(F32ToF16Up(1e6f))));
  EXPECT_EQ(F16ToF32(F32ToF16Down(1e6f)), 65504.0f);
  EXPECT_EQ(F16ToF32(F32ToF16Up(-1e6f)), -65504.0f);
}

TEST(QuestSelectorTest, TheBlockScoreBoundsEveryKeysDotProduct) {
  std::mt19937 rng(12);
  const int64_t n_pos = 20 * kBlock;
  Filled f = Fill(GgmlType::kF16, n_pos, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const kv::KvBlockSummaries& s = f.store.summaries();
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> q(kHd);
    for (auto& x : q) x = nd(rng);
    for (int32_t b = 0; b < 20; ++b)
      for (int64_t g = 0; g < kHeadsKv; ++g) {
        const uint16_t* mn = s.Bounds(0, b, g);
        double bound = 0;
        for (int64_t i = 0; i < kHd; ++i)
          bound += std::max(double(q[i]) * F16ToF32(mn[i]), double(q[i]) * F16ToF32(mn[kHd + i]));
        for (int64_t p = b * kBlock; p < (b + 1) * kBlock; ++p) {
          double dot = 0;
          for (int64_t i = 0; i < kHd; ++i) dot += double(q[i]) * f.k_dec[p * kHeadsKv * kHd + g * kHd + i];
          ASSERT_LE(dot, bound + 1e-9) << "block " << b << " position " << p;
        }
      }
  }
}

// Hand-made bounds: in 12 blocks of zero keys, KV head 0's query aligns with block 6's keys
// and, less, with block 3's; head 1's with block 8's. A budget of 5 blocks keeps the sink
// (block 0), the recent window (10, 11) and the two best of the rest, per head.
TEST(QuestSelectorTest, KeepsSinksAndRecentWindowAndTheBestScoringBlocksPerKvHead) {
  const int64_t hd = 4, n_kv = 2, n_head = 4;  // two query heads per KV head
  kv::KvBlockSummaries s(1, 12, n_kv, hd);
  std::vector<float> zero(n_kv * hd, 0.0f);
  for (int32_t b = 0; b < 12; ++b) s.Add(0, b, 0, zero.data());
  auto key = [&](int32_t b, int64_t g, int64_t ch, float x) {
    std::vector<float> k(n_kv * hd, 0.0f);
    k[g * hd + ch] = x;
    s.Add(0, b, 1, k.data());
  };
  key(6, 0, 2, 3.0f);
  key(3, 0, 2, 1.0f);
  key(9, 0, 1, 0.5f);
  key(8, 1, 0, -2.0f);  // head 1's query is negative on channel 0
  key(5, 1, 3, 0.25f);
  std::vector<float> q(n_head * hd, 0.0f);
  q[1 * hd + 2] = 1.0f;   // query head 1 (KV head 0): channel 2
  q[0 * hd + 1] = 0.1f;   // query head 0 (KV head 0): a little of channel 1
  q[2 * hd + 0] = -1.0f;  // query head 2 (KV head 1): negative channel 0
  q[3 * hd + 3] = 1.0f;   // query head 3 (KV head 1): channel 3
  std::vector<kv::BlockId> table(12);
  std::iota(table.begin(), table.end(), 0);
  kv::KvSparseOptions o;
  o.mode = kv::KvSparseMode::kQuest;
  o.budget_tokens = 5 * 16;
  kv::QuestSelector sel(o, 16, &s);
  std::vector<uint8_t> skip(12 * n_kv, 9);
  ASSERT_TRUE(sel.Select({0, q.data(), n_head, table, 12 * 16 - 3}, skip.data()));
  auto read = [&](int64_t g) {
    std::vector<int> r;
    for (int b = 0; b < 12; ++b)
      if (skip[b * n_kv + g] == 0) r.push_back(b);
      else EXPECT_EQ(skip[b * n_kv + g], 1);
    return r;
  };
  EXPECT_EQ(read(0), (std::vector<int>{0, 3, 6, 10, 11}));
  EXPECT_EQ(read(1), (std::vector<int>{0, 5, 8, 10, 11}));
  // Shared: one pick for both heads, by the best score over all query heads.
  kv::KvSparseOptions shared = o;
  shared.shared_heads = true;
  kv::QuestSelector one(shared, 16, &s);
  ASSERT_TRUE(one.Select({0, q.data(), n_head, table, 12 * 16 - 3}, skip.data()));
  EXPECT_EQ(read(0), (std::vector<int>{0, 6, 8, 10, 11}));
  EXPECT_EQ(read(1), (std::vector<int>{0, 6, 8, 10, 11}));
  // Ties (every block scores 0): the earlier block wins.
  kv::KvBlockSummaries flat(1, 12, n_kv, hd);
  for (int32_t b = 0; b < 12; ++b) flat.Add(0, b, 0, zero.data());
  kv::QuestSelector tie(o, 16, &flat);
  ASSERT_TRUE(tie.Select({0, q.data(), n_head, table, 12 * 16}, skip.data()));
  EXPECT_EQ(read(0), (std::vector<int>{0, 1, 2, 10, 11}));
  // A context within the budget is read whole: nothing to select.
  std::fill(skip.begin(), skip.end(), 9);
  EXPECT_FALSE(sel.Select({0, q.data(), n_head, std::span<const kv::BlockId>(table).first(5), 5 * 16}, skip.data()));
  EXPECT_EQ(skip[0], 9) << "an unselected call must leave the mask alone";
}

// The score kernel: the portable loop and AVX-512 give the same bits, both near a double
// reference.
TEST(QuestSelectorTest, BlockScoresAreTheSameOnEveryKernelPath) {
  std::mt19937 rng(14);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t group = 4, hd = 64, n = 50, stride = 3 * 2 * hd;
  std::vector<float> q(group * hd);
  std::vector<uint16_t> bounds(80 * stride);
  for (auto& x : q) x = nd(rng);
  for (auto& x : bounds) x = F32ToF16(nd(rng));
  std::vector<int32_t> ids(n);
  for (int64_t j = 0; j < n; ++j) ids[j] = static_cast<int32_t>((j * 37) % 80);
  std::vector<std::vector<float>> out;
  for (KernelPath path : {KernelPath::kScalar, KernelPath::kAvx512}) {
    if (!KernelPathSupported(path)) continue;
    ForceKernelPath(path);
    std::vector<float> sc(n);
    QuestBlockScores(q.data(), group, hd, bounds.data() + 2 * hd, stride, ids.data(), n, sc.data());
    out.push_back(sc);
  }
  ForceKernelPath(std::nullopt);
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* mn = bounds.data() + 2 * hd + ids[j] * stride;
    double best = -1e300;
    for (int64_t h = 0; h < group; ++h) {
      double s = 0;
      for (int64_t i = 0; i < hd; ++i)
        s += std::max(double(q[h * hd + i]) * F16ToF32(mn[i]), double(q[h * hd + i]) * F16ToF32(mn[hd + i]));
      best = std::max(best, s);
    }
    EXPECT_NEAR(out[0][j], best, 1e-3) << j;
  }
  if (out.size() == 2) EXPECT_EQ(out[0], out[1]);
}

TEST(StreamingSelectorTest, KeepsTheSinksAndTheMostRecentBlocksForEveryHead) {
  kv::KvSparseOptions o;
  o.mode = kv::KvSparseMode::kStreaming;
  o.budget_tokens = 4 * 16;
  o.sink_blocks = 1;
  kv::KvBlockSummaries s(1, 12, 2, 4);
  auto sel = kv::MakeBlockSelector(o, 16, &s);
  ASSERT_TRUE(sel);
  std::vector<kv::BlockId> table(12);
  std::iota(table.begin(), table.end(), 100 - 12);
  std::vector<float> q(4 * 4, 1.0f);
  std::vector<uint8_t> skip(12 * 2, 9);
  ASSERT_TRUE(sel->Select({0, q.data(), 4, table, 12 * 16 - 1}, skip.data()));
  for (int b = 0; b < 12; ++b)
    for (int g = 0; g < 2; ++g) EXPECT_EQ(skip[b * 2 + g], (b == 0 || b >= 9) ? 0 : 1) << "block " << b;
  EXPECT_FALSE(sel->Select({0, q.data(), 4, std::span<const kv::BlockId>(table).first(4), 4 * 16}, skip.data()));
}

TEST(QuestSelectorTest, OptionsAreChecked) {
  kv::KvSparseOptions o;
  o.mode = kv::KvSparseMode::kQuest;
  o.budget_tokens = 63;  // below sink + 2 recent + 1 block of 16
  EXPECT_FALSE(kv::CheckKvSparse(o, 16).ok());
  o.budget_tokens = 64;
  EXPECT_TRUE(kv::CheckKvSparse(o, 16).ok());
  o.recent_blocks = 0;
  EXPECT_FALSE(kv::CheckKvSparse(o, 16).ok());
  EXPECT_FALSE(kv::ParseKvSparseMode("h2o-ish").ok());
  EXPECT_EQ(*kv::ParseKvSparseMode("quest"), kv::KvSparseMode::kQuest);
  EXPECT_EQ(*kv::ParseKvSparseMode("streaming"), kv::KvSparseMode::kStreaming);
}

// Per-KV-head skips: each head's output is attention over its own kept blocks; a block no
// head reads may be absent from memory (a null address is never touched).
TEST(PagedAttentionSparseTest, PerHeadSkipsAreAbsentKeysForThatHeadOnly) {
  std::mt19937 rng(13);
  const int64_t n_pos = 37 * kBlock + 5;  // several 256-key spans, a partial block
  Filled f = Fill(GgmlType::kF16, n_pos, rng);
  const int64_t nb = (n_pos + kBlock - 1) / kBlock;
  std::vector<int32_t> blocks(nb);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<uint8_t> skip(nb * kHeadsKv);
  std::bernoulli_distribution coin(0.6);
  for (auto& x : skip) x = coin(rng);
  skip[3 * kHeadsKv + 0] = skip[3 * kHeadsKv + 1] = 1;  // block 3: skipped by both
  std::vector<uint8_t*> table(64);
  const kv::PagedKvLayer full = f.store.Layer(0);
  for (int64_t b = 0; b < 64; ++b) table[b] = full.blocks[b];
  for (int64_t b = 0; b < nb; ++b)
    if (skip[b * kHeadsKv] && skip[b * kHeadsKv + 1]) table[b] = nullptr;
  kv::PagedKvLayer layer = full;
  layer.blocks = table.data();
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(kHeads * kHd);
  for (auto& x : q) x = nd(rng);
  const AttentionShape shape{kHeads, kHeadsKv, kHd, 1.0f / std::sqrt(float(kHd))};
  PagedQuery row{blocks.data(), n_pos, skip.data(), static_cast<int32_t>(kHeadsKv)};
  std::vector<float> out(q.size());
  ThreadPool pool(2);
  PagedAttention(shape, layer, std::span<const PagedQuery>(&row, 1), q.data(), out.data(), &pool);
  const int64_t G = kHeads / kHeadsKv, KV = kHeadsKv * kHd;
  for (int64_t h = 0; h < kHeads; ++h) {
    const int64_t g = h / G;
    std::vector<double> sc;
    std::vector<int64_t> ps;
    for (int64_t p = 0; p < n_pos; ++p) {
      if (skip[(p / kBlock) * kHeadsKv + g]) continue;
      double d = 0;
      for (int64_t i = 0; i < kHd; ++i) d += double(q[h * kHd + i]) * f.k_dec[p * KV + g * kHd + i];
      sc.push_back(d / std::sqrt(double(kHd)));
      ps.push_back(p);
    }
    ASSERT_FALSE(sc.empty());
    const double m = *std::max_element(sc.begin(), sc.end());
    double z = 0;
    for (double& x : sc) z += (x = std::exp(x - m));
    for (int64_t i = 0; i < kHd; ++i) {
      double want = 0;
      for (size_t j = 0; j < sc.size(); ++j) want += sc[j] / z * f.v_dec[ps[j] * KV + g * kHd + i];
      ASSERT_NEAR(out[h * kHd + i], want, 2e-5) << "head " << h << " [" << i << "]";
    }
  }
}

TEST(KvBlockSummariesTest, SumsAreTheSumsOfTheStoredKeysAndValues) {
  std::mt19937 rng(17);
  const int64_t n_pos = 3 * kBlock + 4, KV = kHeadsKv * kHd;
  Filled f = Fill(GgmlType::kQ8_0, n_pos, rng, 64, /*sums=*/true);
  const kv::KvBlockSummaries& s = f.store.summaries();
  ASSERT_TRUE(s.has_sums());
  for (int32_t b = 0; b < 4; ++b)
    for (int64_t g = 0; g < kHeadsKv; ++g)
      for (int64_t i = 0; i < kHd; ++i) {
        double k = 0, v = 0;
        for (int64_t p = b * kBlock; p < std::min<int64_t>(n_pos, (b + 1) * kBlock); ++p) {
          k += f.k_dec[p * KV + g * kHd + i];
          v += f.v_dec[p * KV + g * kHd + i];
        }
        const float* sums = s.LayerSums(0) + (b * kHeadsKv + g) * 2 * kHd;
        ASSERT_NEAR(sums[i], k, 1e-4) << "block " << b;
        ASSERT_NEAR(sums[kHd + i], v, 1e-4) << "block " << b;
      }
  EXPECT_EQ(f.store.Layer(0).block_sums, s.LayerSums(0));
  ASSERT_TRUE(f.store.CopyBlock(1, 50, kBlock).ok());
  EXPECT_TRUE(std::equal(s.LayerSums(0) + 1 * KV * 2, s.LayerSums(0) + 2 * KV * 2, s.LayerSums(0) + 50 * KV * 2));
  // Without sums the layer names none.
  Filled plain = Fill(GgmlType::kF16, 20, rng);
  EXPECT_FALSE(plain.store.summaries().has_sums());
  EXPECT_EQ(plain.store.Layer(0).block_sums, nullptr);
}

TEST(PagedAttentionSparseTest, SkippedBlocksCountAsTheirMeanKeyAndValue) {
  std::mt19937 rng(19);
  const int64_t n_pos = 37 * kBlock + 5;
  Filled f = Fill(GgmlType::kF16, n_pos, rng, 64, /*sums=*/true);
  const int64_t nb = (n_pos + kBlock - 1) / kBlock, G = kHeads / kHeadsKv, KV = kHeadsKv * kHd;
  std::vector<int32_t> blocks(nb);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<uint8_t> skip(nb * kHeadsKv);
  std::bernoulli_distribution coin(0.7);
  for (auto& x : skip) x = coin(rng);
  skip[(nb - 1) * kHeadsKv] = 1;  // the partial last block, skipped by head 0: no mean for it
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const AttentionShape shape{kHeads, kHeadsKv, kHd, 1.0f / std::sqrt(float(kHd))};
  // One decode row, then 8 rows over the same blocks (the many-row paths).
  for (int64_t n_rows : {1, 8}) {
    SCOPED_TRACE(n_rows);
    std::vector<float> q(n_rows * kHeads * kHd);
    for (auto& x : q) x = nd(rng);
    std::vector<PagedQuery> rows;
    for (int64_t r = 0; r < n_rows; ++r) {
      PagedQuery row{blocks.data(), n_pos - r * 3, skip.data(), static_cast<int32_t>(kHeadsKv)};
      row.mean_skipped = true;
      rows.push_back(row);
    }
    std::vector<float> out(q.size());
    ThreadPool pool(2);
    PagedAttention(shape, f.store.Layer(0), rows, q.data(), out.data(), &pool);
    for (int64_t r = 0; r < n_rows; ++r)
      for (int64_t h = 0; h < kHeads; ++h) {
        const int64_t g = h / G, nk = rows[r].n_keys;
        const float* qh = q.data() + (r * kHeads + h) * kHd;
        std::vector<double> sc;
        std::vector<std::vector<double>> vals;
        for (int64_t b = 0; b * kBlock < nk; ++b) {
          const int64_t p0 = b * kBlock, p1 = std::min<int64_t>(nk, (b + 1) * kBlock);
          if (skip[b * kHeadsKv + g]) {
            if (p1 - p0 < kBlock) continue;  // partly below n_keys: nothing
            std::vector<double> km(kHd, 0.0), vm(kHd, 0.0);
            for (int64_t p = p0; p < p1; ++p)
              for (int64_t i = 0; i < kHd; ++i) {
                km[i] += f.k_dec[p * KV + g * kHd + i] / double(kBlock);
                vm[i] += f.v_dec[p * KV + g * kHd + i] / double(kBlock);
              }
            double d = 0;
            for (int64_t i = 0; i < kHd; ++i) d += double(qh[i]) * km[i];
            sc.push_back(d / std::sqrt(double(kHd)) + std::log(double(kBlock)));
            vals.push_back(vm);
            continue;
          }
          for (int64_t p = p0; p < p1; ++p) {
            double d = 0;
            for (int64_t i = 0; i < kHd; ++i) d += double(qh[i]) * f.k_dec[p * KV + g * kHd + i];
            sc.push_back(d / std::sqrt(double(kHd)));
            vals.emplace_back(f.v_dec.begin() + p * KV + g * kHd, f.v_dec.begin() + p * KV + (g + 1) * kHd);
          }
        }
        const double m = *std::max_element(sc.begin(), sc.end());
        double z = 0;
        for (double& x : sc) z += (x = std::exp(x - m));
        for (int64_t i = 0; i < kHd; ++i) {
          double want = 0;
          for (size_t j = 0; j < sc.size(); ++j) want += sc[j] / z * vals[j][i];
          ASSERT_NEAR(out[(r * kHeads + h) * kHd + i], want, 3e-5) << "row " << r << " head " << h << " [" << i << "]";
        }
      }
  }
}

// ---- The model in quest mode ----

int32_t Argmax(const std::vector<float>& x) { return static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin()); }

struct DecodeRun {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // per decode step
  LlamaModel::KvReadStats reads;
  uint64_t spill_read_bytes = 0;
};

DecodeRun Decode(const kv::KvSparseOptions& sparse, uint64_t kv_mem, int steps) {
  EngineOptions o;
  o.model_path = testing::StoriesModel().string();
  o.n_ctx = 640;
  o.n_threads = 2;
  o.kv_format = {GgmlType::kF16, GgmlType::kF16, 16};
  o.kv_sparse = sparse;
  o.kv_mem_bytes = kv_mem;
  o.kv_spill_dir = testing::DataDir().string();
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  DecodeRun r;
  if (!e.ok()) return r;
  std::string text;
  for (int i = 0; i < 20; ++i) text += "Lily and Tom went to the park. They saw a big dog and a red ball. ";
  std::vector<int32_t> prompt = (*e)->tokenizer().Encode(text, true, false);
  std::vector<float> logits;
  Status st = (*e)->model().Forward(prompt, (*e)->kv(), false, &logits, &(*e)->pool());
  EXPECT_TRUE(st.ok()) << st.ToString();
  (*e)->model().reset_kv_read_stats();
  for (int i = 0; i < steps && st.ok(); ++i) {
    const int32_t t = Argmax(logits);
    r.tokens.push_back(t);
    st = (*e)->model().Forward(std::span<const int32_t>(&t, 1), (*e)->kv(), false, &logits, &(*e)->pool());
    EXPECT_TRUE(st.ok()) << st.ToString();
    r.logits.push_back(logits);
  }
  r.reads = (*e)->model().kv_read_stats();
  r.spill_read_bytes = (*e)->kv().paged().store().TierStats().read_bytes;
  return r;
}

TEST(SparseDecodeTest, QuestIsBitIdenticalToExactWhenItsBudgetCoversTheContext) {
  const DecodeRun exact = Decode({}, 0, 40);
  ASSERT_EQ(exact.logits.size(), 40u);
  ASSERT_GT(exact.reads.total, 0u);
  EXPECT_EQ(exact.reads.read, exact.reads.total);
  kv::KvSparseOptions quest;
  quest.mode = kv::KvSparseMode::kQuest;
  quest.budget_tokens = 640;
  const DecodeRun full = Decode(quest, 0, 40);
  EXPECT_EQ(full.tokens, exact.tokens);
  EXPECT_EQ(full.logits, exact.logits) << "a budget covering the context must change no bit";
  EXPECT_EQ(full.reads.read, full.reads.total);
  // A small budget reads a fraction of the blocks, and its logits move.
  quest.budget_tokens = 128;
  const DecodeRun small = Decode(quest, 0, 40);
  ASSERT_EQ(small.logits.size(), 40u);
  EXPECT_LT(small.reads.read, small.reads.total / 2) << small.reads.read << " of " << small.reads.total;
  EXPECT_NE(small.logits, exact.logits);
  // Skipped blocks as their means: bit-identical too when nothing is skipped, and nearer
  // exact than dropping them when something is.
  quest.mean_skipped = true;
  quest.budget_tokens = 640;
  EXPECT_EQ(Decode(quest, 0, 40).logits, exact.logits);
  quest.budget_tokens = 128;
  const DecodeRun mean = Decode(quest, 0, 40);
  ASSERT_EQ(mean.logits.size(), 40u);
  EXPECT_EQ(mean.reads.read, small.reads.read) << "the same blocks read";
  double d_drop = 0, d_mean = 0;
  for (size_t i = 0; i < exact.logits[0].size(); ++i) {
    d_drop += std::abs(small.logits[0][i] - exact.logits[0][i]);
    d_mean += std::abs(mean.logits[0][i] - exact.logits[0][i]);
  }
  EXPECT_LT(d_mean, d_drop) << "the first step's logits: means " << d_mean << ", dropped " << d_drop;
}

TEST(SparseDecodeTest, ATieredCacheReadsOnlyTheSelectedBlocksAndGivesTheInMemoryBits) {
  kv::KvSparseOptions quest;
  quest.mode = kv::KvSparseMode::kQuest;
  quest.budget_tokens = 128;
  const DecodeRun mem = Decode(quest, 0, 30);
  // The KV share holds about two layers' worth of the ~36 blocks of this context (the
  // least a context of 640 may have): every decode step reads blocks back from the spill file.
  const uint64_t share = 84 * kv::PagedKvStore::TieredSlotBytes(4, 8, {GgmlType::kF16, GgmlType::kF16, 16});
  const DecodeRun tiered = Decode(quest, share, 30);
  EXPECT_EQ(tiered.tokens, mem.tokens);
  EXPECT_EQ(tiered.logits, mem.logits) << "sparse mode must not depend on the tier";
  const DecodeRun tiered_exact = Decode({}, share, 30);
  ASSERT_GT(tiered_exact.spill_read_bytes, 0u);
  // One selection for all heads reads no more than the per-head union.
  quest.shared_heads = true;
  const DecodeRun shared = Decode(quest, share, 30);
  EXPECT_EQ(shared.logits, Decode(quest, 0, 30).logits) << "shared selection must not depend on the tier either";
  EXPECT_LT(shared.spill_read_bytes, tiered.spill_read_bytes);
  // Blocks hold every KV head, so a layer reads the union of its heads' selections.
  EXPECT_LT(tiered.spill_read_bytes, tiered_exact.spill_read_bytes)
      << "quest read " << tiered.spill_read_bytes << " bytes back, exact " << tiered_exact.spill_read_bytes;
}

}  // namespace
}  // namespace tierlm
