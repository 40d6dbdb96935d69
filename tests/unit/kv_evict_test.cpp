// KV eviction (kv/eviction_policy.h, kv/kv_evictor.h): evicted blocks become holes that
// free their block and keep every later position in place; each policy picks its victim
// as its paper's score says, on hand-made attention and surprisal patterns; the attention
// share per block is the softmax a direct computation gives; and a model under eviction
// is bit-identical to exact when the bound covers the context, reads exactly what
// StreamingLLM's window reads right after a prefill (positions and holes right), and runs
// contexts far past the cache's own size while holding at most the bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/attention_mass.h"
#include "kernels/quant.h"
#include "kv/eviction_policy.h"
#include "kv/kv_block_manager.h"
#include "kv/kv_evictor.h"
#include "kv/paged_kv_cache.h"
#include "runtime/engine.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using kv::kHole;

std::vector<int32_t> Iota(int n, int from = 100) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), from);
  return t;
}

// ---- Holes in the block table ----

TEST(KvBlockManagerEvictTest, AnEvictedBlockIsAHoleItsBlockIsFreeAndPositionsStay) {
  kv::KvBlockManager bm(4, 8, 7);
  std::vector<kv::BlockCopy> copies;
  ASSERT_EQ(bm.Reserve(0, 14, &copies), Admit::kOk);
  ASSERT_TRUE(bm.Append(0, Iota(14)).ok());
  const std::vector<kv::BlockId> before(bm.BlockTable(0).begin(), bm.BlockTable(0).end());
  ASSERT_EQ(before.size(), 4u);
  EXPECT_EQ(bm.n_free(), 4);
  ASSERT_TRUE(bm.Evict(0, 1).ok());
  EXPECT_EQ(bm.BlockTable(0)[1], kHole);
  EXPECT_EQ(bm.BlockTable(0)[2], before[2]) << "later blocks keep their places";
  EXPECT_EQ(bm.Length(0), 14) << "positions are not renumbered";
  EXPECT_EQ(bm.LiveBlocks(0), 3);
  EXPECT_TRUE(bm.Evicted(0));
  EXPECT_EQ(bm.Slot(0, 13).block, before[3]);
  EXPECT_EQ(bm.Slot(0, 13).offset, 1);
  EXPECT_EQ(bm.n_free(), 5) << "the evicted block is free for anyone";
  const std::vector<kv::BlockId> released = bm.TakeReleased();
  EXPECT_EQ(released, std::vector<kv::BlockId>{before[1]}) << "uncomputed: its bytes are discarded";
  // Not twice, not a partly filled block, not a sink past the end.
  EXPECT_FALSE(bm.Evict(0, 1).ok());
  EXPECT_FALSE(bm.Evict(0, 3).ok()) << "block 3 holds 2 of 4 positions";
  EXPECT_FALSE(bm.Evict(0, 9).ok());
  EXPECT_FALSE(bm.Evict(5, 0).ok());
  // Truncating into the hole would leave positions that are gone: refused; at its start it is fine.
  EXPECT_FALSE(bm.Truncate(0, 6).ok());
  EXPECT_EQ(bm.Length(0), 14);
  ASSERT_TRUE(bm.Truncate(0, 8).ok());
  EXPECT_EQ(bm.BlockTable(0).size(), 2u);
  EXPECT_EQ(bm.LiveBlocks(0), 1);
  ASSERT_TRUE(bm.Truncate(0, 4).ok()) << "dropping the hole itself";
  EXPECT_EQ(bm.LiveBlocks(0), 1);
  bm.Free(0);
  EXPECT_EQ(bm.n_free(), 8);
}

TEST(KvBlockManagerEvictTest, AdmissionCountsLiveBlocksSoABoundedSequenceOutgrowsTheCache) {
  kv::KvBlockManager bm(4, 4, 7);
  std::vector<kv::BlockCopy> copies;
  for (int step = 0; step < 20; ++step) {  // 80 positions through a 16-position cache
    ASSERT_EQ(bm.Reserve(0, 4, &copies), Admit::kOk) << "step " << step;
    ASSERT_TRUE(bm.Append(0, Iota(4, 10 * step)).ok());
    if (bm.LiveBlocks(0) == 4) {
      ASSERT_TRUE(bm.Evict(0, static_cast<int64_t>(bm.BlockTable(0).size()) - 4 + 1).ok());
    }
  }
  EXPECT_EQ(bm.Length(0), 80);
  EXPECT_EQ(bm.LiveBlocks(0), 3);
  ASSERT_EQ(bm.Reserve(1, 4, &copies), Admit::kOk) << "the free block, to another sequence";
  EXPECT_EQ(bm.Reserve(0, 4, &copies), Admit::kLater) << "3 held + 1 fits, once sequence 1 lets go";
  EXPECT_EQ(bm.Reserve(0, 4 * 2, &copies), Admit::kImpossible) << "3 held + 2 new > 4 blocks";
}

TEST(KvBlockManagerEvictTest, ExactBlocksStayReusableBlocksFilledAfterAnEvictionGetNoHash) {
  kv::KvBlockManager bm(4, 16, 7);
  std::vector<kv::BlockCopy> copies;
  const std::vector<int32_t> prompt = Iota(12);
  ASSERT_EQ(bm.Reserve(0, 12, &copies), Admit::kOk);
  ASSERT_TRUE(bm.Append(0, prompt).ok());
  bm.MarkComputed(0, 12);
  const kv::BlockId b1 = bm.BlockTable(0)[1];
  const uint64_t h1 = bm.BlockHash(b1);
  ASSERT_NE(h1, 0u);
  ASSERT_TRUE(bm.Evict(0, 1).ok());
  EXPECT_EQ(bm.FindCached(h1), b1) << "computed before any eviction: still an exact prefix block";
  EXPECT_EQ(bm.n_cached(), 1);
  ASSERT_EQ(bm.Reserve(0, 4, &copies), Admit::kOk);
  ASSERT_TRUE(bm.Append(0, Iota(4, 500)).ok());
  EXPECT_EQ(bm.BlockHash(bm.BlockTable(0)[3]), 0u) << "computed over an evicted past: never reusable";
  bm.MarkComputed(0, 16);
  EXPECT_EQ(bm.n_cached(), 1);
  // A fork shares the live blocks and the holes.
  ASSERT_TRUE(bm.Fork(0, 1).ok());
  EXPECT_EQ(bm.BlockTable(1)[1], kHole);
  EXPECT_EQ(bm.LiveBlocks(1), 3);
  EXPECT_EQ(bm.RefCount(bm.BlockTable(0)[0]), 2);
  EXPECT_TRUE(bm.Evicted(1));
  bm.Free(0);
  bm.Free(1);
  EXPECT_EQ(bm.n_free(), 16);
  // The cached exact block serves a new sequence with the same prefix.
  EXPECT_EQ(bm.AttachCached(2, bm.ChainHashes(prompt, 0), 0), 3);
}

// ---- Policies on hand-made patterns ----

std::unique_ptr<kv::EvictionPolicy> Policy(kv::KvEvictMode mode, int32_t window = 32, double decay = 0.99) {
  kv::KvEvictOptions o;
  o.mode = mode;
  o.window = window;
  o.decay = decay;
  return kv::MakeEvictionPolicy(o, 4);
}

// Three queries over blocks 0..3: block 1 drew attention early, block 2 a little always,
// block 3 lately.
void Observe(kv::EvictionPolicy& p) {
  const std::vector<std::vector<float>> q = {{0.4f, 0.5f, 0.1f, 0.0f}, {0.6f, 0.0f, 0.1f, 0.3f}, {0.6f, 0.0f, 0.1f, 0.3f}};
  for (size_t i = 0; i < q.size(); ++i) p.ObserveAttention(16 + static_cast<int64_t>(i), q[i]);
}

TEST(EvictionPolicyTest, EachPolicyPicksTheBlockItsScoreRanksLowest) {
  const std::vector<int64_t> cands = {1, 2, 3};
  EXPECT_EQ(Policy(kv::KvEvictMode::kNone), nullptr);
  auto streaming = Policy(kv::KvEvictMode::kStreaming);
  Observe(*streaming);
  EXPECT_EQ(streaming->Victim(cands), 1) << "oldest";
  // h2o, sums: block 1 0.5, block 2 0.3, block 3 0.6.
  auto h2o = Policy(kv::KvEvictMode::kH2o);
  EXPECT_TRUE(h2o->wants_attention());
  Observe(*h2o);
  EXPECT_EQ(h2o->Victim(cands), 2);
  // snapkv, the last two queries: block 1 0, block 2 0.2, block 3 0.6.
  auto snap = Policy(kv::KvEvictMode::kSnapKv, 2);
  Observe(*snap);
  EXPECT_EQ(snap->Victim(cands), 1);
  // A window of all three is h2o.
  auto snap3 = Policy(kv::KvEvictMode::kSnapKv, 3);
  Observe(*snap3);
  EXPECT_EQ(snap3->Victim(cands), 2);
  // retention, decay 0.5: block 1 0.5/4 = 0.125, block 2 0.1/4 + 0.1/2 + 0.1 = 0.175, block 3 0.45.
  auto ret = Policy(kv::KvEvictMode::kRetention, 32, 0.5);
  Observe(*ret);
  EXPECT_EQ(ret->Victim(cands), 1);
  // decay 1 is h2o.
  auto ret1 = Policy(kv::KvEvictMode::kRetention, 32, 1.0);
  Observe(*ret1);
  EXPECT_EQ(ret1->Victim(cands), 2);
  // sirllm: surprisal sums per block of 4 positions.
  auto sir = Policy(kv::KvEvictMode::kSirLlm);
  EXPECT_TRUE(sir->wants_surprisal());
  EXPECT_FALSE(sir->wants_attention());
  const float nats[16] = {0, 1, 1, 1, 3, 0, 0, 0, 0.5f, 0.5f, 0.5f, 0.5f, 9, 0, 0, 0};
  for (int p = 0; p < 16; ++p) sir->ObserveSurprisal(p, nats[p]);
  EXPECT_EQ(sir->Victim(cands), 2) << "block 2 (2.0) under block 1 (3.0) and block 3 (9.0)";
  EXPECT_EQ(sir->Victim(std::vector<int64_t>{1, 3}), 1);
}

TEST(EvictionPolicyTest, LazyKeepsABlockWhoseAttentionRecursAndDropsOneThatOverstayed) {
  auto lazy = Policy(kv::KvEvictMode::kLazy);
  // Five blocks seen from position 0. Fair share 1/5 = 0.2: block 1 is hit every 10
  // queries (interval 10), block 2 once at 5 (interval 5: it waited 5 since first seen),
  // block 3 never.
  for (int64_t pos = 0; pos <= 36; ++pos) {
    std::vector<float> m = {0.25f, 0.15f, 0.15f, 0.15f, 0.3f};
    if (pos % 10 == 0) m = {0.2f, 0.6f, 0.0f, 0.0f, 0.2f};
    if (pos == 5) m = {0.2f, 0.0f, 0.6f, 0.0f, 0.2f};
    lazy->ObserveAttention(pos, m);
  }
  // At 36: block 1 idle 6 of interval 10 (+4), block 2 idle 31 of 5 (-26), block 3 idle 36 of 0 (-36).
  EXPECT_EQ(lazy->Victim(std::vector<int64_t>{1, 2, 3}), 3);
  EXPECT_EQ(lazy->Victim(std::vector<int64_t>{1, 2}), 2);
  lazy->Truncate(4 * 4);  // back to 16 positions: blocks 0..3 kept, the clock back to 15
  EXPECT_EQ(lazy->Victim(std::vector<int64_t>{1, 2, 3}), 3);
}

TEST(EvictionPolicyTest, TiesGoToTheOldestAndTruncationForgets) {
  for (kv::KvEvictMode m : {kv::KvEvictMode::kH2o, kv::KvEvictMode::kSnapKv, kv::KvEvictMode::kRetention,
                            kv::KvEvictMode::kSirLlm, kv::KvEvictMode::kLazy}) {
    SCOPED_TRACE(kv::KvEvictModeName(m));
    auto p = Policy(m);
    EXPECT_EQ(p->Victim(std::vector<int64_t>{2, 3, 5}), 2) << "nothing observed: all equal";
  }
  auto h2o = Policy(kv::KvEvictMode::kH2o);
  Observe(*h2o);
  h2o->Truncate(8);  // blocks 2 and 3 dropped: their scores start from zero
  EXPECT_EQ(h2o->Victim(std::vector<int64_t>{1, 2, 3}), 2);
  auto snap = Policy(kv::KvEvictMode::kSnapKv, 3);
  Observe(*snap);
  snap->Truncate(17);  // only the query at 16 remains
  EXPECT_EQ(snap->Victim(std::vector<int64_t>{1, 2, 3}), 3) << "query 16 gave block 3 nothing";
}

TEST(EvictionPolicyTest, OptionsAreChecked) {
  kv::KvEvictOptions o;
  EXPECT_TRUE(kv::CheckKvEvict(o, 16).ok()) << "none needs nothing";
  o.mode = kv::KvEvictMode::kH2o;
  o.max_tokens = 64;  // 1 sink + 2 recent + the filling block + 1 = 5 blocks of 16 = 80
  EXPECT_FALSE(kv::CheckKvEvict(o, 16).ok());
  o.max_tokens = 80;
  EXPECT_TRUE(kv::CheckKvEvict(o, 16).ok());
  o.decay = 0;
  EXPECT_FALSE(kv::CheckKvEvict(o, 16).ok());
  o.decay = 0.9;
  o.window = 0;
  EXPECT_FALSE(kv::CheckKvEvict(o, 16).ok());
  EXPECT_FALSE(kv::ParseKvEvictMode("lru").ok());
  EXPECT_EQ(*kv::ParseKvEvictMode("snapkv"), kv::KvEvictMode::kSnapKv);
  o.decay = 0.99;
  o.window = 32;
  o.max_tokens = 512;
  EXPECT_EQ(kv::KvPositionsFor(o, 16), 512 + 256 + 16);
}

// ---- The evictor over a cache ----

TEST(KvEvictorTest, EnforceHoldsTheBoundKeepingSinksAndTheWindow) {
  kv::PagedKvOptions o;
  o.n_layer = 1;
  o.n_head_kv = 1;
  o.head_dim = 32;
  o.format = {GgmlType::kF32, GgmlType::kF32, 4};
  o.n_blocks = 9;
  auto cache = kv::PagedKvCache::Create(o);
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  kv::KvEvictOptions eo;
  eo.mode = kv::KvEvictMode::kH2o;
  eo.max_tokens = 6 * 4;
  eo.sink_blocks = 1;
  eo.recent_blocks = 2;
  kv::KvEvictor ev(eo, 4);
  EXPECT_TRUE(ev.wants_attention());
  // Block 5 draws every query's attention; the others little.
  int64_t pos = 0;
  for (int round = 0; round < 12; ++round) {
    ASSERT_TRUE((*cache)->AddTokens(0, Iota(4, 10 * round)).ok()) << "round " << round;
    for (int i = 0; i < 4; ++i, ++pos) {
      const int64_t nb = pos / 4 + 1;
      std::vector<float> m(static_cast<size_t>(nb), 0.5f / static_cast<float>(nb));
      if (nb > 5) m[5] += 0.5f;
      else m[0] += 0.5f;
      ev.ObserveAttention(0, pos, m);
    }
    (*cache)->SetComputed(0, pos);
    auto n = ev.Enforce(**cache, 0);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    const auto table = (*cache)->blocks().BlockTable(0);
    ASSERT_LE((*cache)->blocks().LiveBlocks(0), 6) << "round " << round;
    EXPECT_NE(table[0], kHole) << "the sink stays";
    for (size_t i = table.size() > 2 ? table.size() - 2 : 0; i < table.size(); ++i)
      EXPECT_NE(table[i], kHole) << "the window stays: block " << i << " round " << round;
    if (table.size() > 8) {
      EXPECT_NE(table[5], kHole) << "the heavy hitter stays, round " << round;
    }
  }
  EXPECT_EQ((*cache)->blocks().Length(0), 48);
  EXPECT_EQ(ev.evicted_blocks(), 12u - 6u);
  // The sequence ends: the evictor forgets it.
  (*cache)->Free(0);
  ev.Prune((*cache)->blocks());
  EXPECT_EQ((*cache)->blocks().n_free(), 9);
}

// ---- Attention share per block ----

TEST(AttentionMassTest, IsTheSoftmaxShareOfEachBlockSkippingHoles) {
  constexpr int64_t kHkv = 2, kH = 6, kD = 32, kB = 8;
  const int64_t n_pos = 9 * kB + 3;
  auto st = kv::PagedKvStore::Create(1, kHkv, kD, kv::KvFormat{GgmlType::kF16, GgmlType::kF16, kB}, 16);
  ASSERT_TRUE(st.ok());
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> kdec(n_pos * kHkv * kD), k(kHkv * kD), v(kHkv * kD);
  std::vector<uint8_t> enc(kD * 4);
  // Blocks stored in a shuffled order: the table maps them.
  std::vector<int32_t> table(10);
  std::iota(table.begin(), table.end(), 3);
  std::shuffle(table.begin(), table.end(), rng);
  for (int64_t p = 0; p < n_pos; ++p) {
    for (auto& x : k) x = 2 * nd(rng);
    for (auto& x : v) x = nd(rng);
    st->Write(0, {table[p / kB], static_cast<int32_t>(p % kB)}, k.data(), v.data());
    for (int64_t g = 0; g < kHkv; ++g) {
      QuantizeRow(GgmlType::kF16, k.data() + g * kD, enc.data(), kD);
      DequantizeRow(GgmlType::kF16, enc.data(), kdec.data() + (p * kHkv + g) * kD, kD);
    }
  }
  std::vector<uint8_t> holes(10, 0);
  holes[2] = holes[6] = 1;
  std::vector<float> q(3 * kH * kD);
  for (auto& x : q) x = nd(rng);
  // Row 0 sees everything, row 1 skips the holes, row 2 sees 20 positions, inactive.
  std::vector<PagedQuery> rows = {{table.data(), n_pos, nullptr}, {table.data(), n_pos, holes.data()},
                                  {table.data(), 20, nullptr}};
  const uint8_t active[3] = {1, 1, 0};
  const AttentionShape shape{kH, kHkv, kD, 1.0f / std::sqrt(float(kD))};
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    std::vector<double> mass(3 * 12, 0.0);
    AddAttentionBlockMass(shape, st->Layer(0), rows, active, q.data(), mass.data(), 12, &pool);
    for (int64_t r = 0; r < 3; ++r) {
      std::vector<double> want(12, 0.0);
      if (active[r])
        for (int64_t h = 0; h < kH; ++h) {
          const int64_t g = h / (kH / kHkv);
          std::vector<double> sc;
          std::vector<int64_t> at;
          for (int64_t p = 0; p < rows[r].n_keys; ++p) {
            if (r == 1 && holes[p / kB]) continue;
            double d = 0;
            for (int64_t i = 0; i < kD; ++i) d += double(q[(r * kH + h) * kD + i]) * kdec[(p * kHkv + g) * kD + i];
            sc.push_back(d / std::sqrt(double(kD)));
            at.push_back(p);
          }
          const double m = *std::max_element(sc.begin(), sc.end());
          double z = 0;
          for (double x : sc) z += std::exp(x - m);
          for (size_t j = 0; j < sc.size(); ++j) want[at[j] / kB] += std::exp(sc[j] - m) / z;
        }
      double sum = 0;
      for (int64_t b = 0; b < 12; ++b) {
        EXPECT_NEAR(mass[r * 12 + b], want[b], 1e-4) << "threads " << threads << " row " << r << " block " << b;
        sum += mass[r * 12 + b];
      }
      EXPECT_NEAR(sum, active[r] ? double(kH) : 0.0, 1e-9);
      if (r == 1) {
        EXPECT_EQ(mass[12 + 2], 0.0) << "a hole gets nothing";
      }
    }
  }
}

// ---- The model under eviction ----

struct EvictRun {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // per decode step
  std::vector<int64_t> live;               // live blocks after each step
  int64_t n_blocks = 0;
  uint64_t evicted = 0;
};

std::vector<int32_t> Prompt(const tokenizer::Tokenizer& tok, int reps) {
  std::string text;
  for (int i = 0; i < reps; ++i) text += "Lily and Tom went to the park. They saw a big dog and a red ball. ";
  return tok.Encode(text, true, false);
}

EvictRun Generate(const kv::KvSparseOptions& sparse, const kv::KvEvictOptions& evict, int reps, int steps,
             int64_t prompt_cut = 0) {
  EngineOptions o;
  o.model_path = testing::StoriesModel().string();
  o.n_ctx = 2048;
  o.n_threads = 2;
  o.kv_format = {GgmlType::kF16, GgmlType::kF16, 16};
  o.kv_sparse = sparse;
  o.kv_evict = evict;
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  EvictRun r;
  if (!e.ok()) return r;
  std::vector<int32_t> prompt = Prompt((*e)->tokenizer(), reps);
  if (prompt_cut > 0) prompt.resize(static_cast<size_t>(prompt_cut));
  std::vector<float> logits;
  Status st = (*e)->model().Forward(prompt, (*e)->kv(), false, &logits, &(*e)->pool());
  EXPECT_TRUE(st.ok()) << st.ToString();
  const kv::KvBlockManager& bm = (*e)->kv().paged().blocks();
  r.n_blocks = bm.n_blocks();
  for (int i = 0; i < steps && st.ok(); ++i) {
    const int32_t t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    r.tokens.push_back(t);
    st = (*e)->model().Forward(std::span<const int32_t>(&t, 1), (*e)->kv(), false, &logits, &(*e)->pool());
    EXPECT_TRUE(st.ok()) << st.ToString();
    r.logits.push_back(logits);
    r.live.push_back(bm.LiveBlocks(KvCache::kSeq));
  }
  r.evicted = (*e)->model().kv_evicted_blocks();
  return r;
}

constexpr kv::KvEvictMode kPolicies[] = {kv::KvEvictMode::kStreaming, kv::KvEvictMode::kH2o,
                                         kv::KvEvictMode::kSnapKv,    kv::KvEvictMode::kSirLlm,
                                         kv::KvEvictMode::kLazy,      kv::KvEvictMode::kRetention};

TEST(EvictDecodeTest, EveryPolicyIsBitIdenticalToExactWhenTheBoundCoversTheContext) {
  const EvictRun exact = Generate({}, {}, 20, 24);
  ASSERT_EQ(exact.logits.size(), 24u);
  for (kv::KvEvictMode m : kPolicies) {
    SCOPED_TRACE(kv::KvEvictModeName(m));
    kv::KvEvictOptions ev;
    ev.mode = m;
    ev.max_tokens = 2048;
    const EvictRun r = Generate({}, ev, 20, 24);
    EXPECT_EQ(r.tokens, exact.tokens);
    EXPECT_EQ(r.logits, exact.logits) << "a bound covering the context must change no bit";
    EXPECT_EQ(r.evicted, 0u);
  }
}

TEST(EvictDecodeTest, StreamingEvictionAttendsAtTheOriginalPositionsAsTheStreamingWindowDoes) {
  // A prompt of 16k + 1 tokens prefilled in one chunk (exactly), then cut to the bound:
  // the sink and the newest blocks. While decoding fills the last block, attention sees
  // exactly what sparse streaming over the full cache reads (the same blocks at the same
  // positions), so the bits agree; a RoPE or hole mix-up would not.
  const int64_t P = 16 * 21 + 1;
  kv::KvEvictOptions ev;
  ev.mode = kv::KvEvictMode::kStreaming;
  ev.max_tokens = 8 * 16;
  ev.prefill_chunk = 512;
  kv::KvSparseOptions window;
  window.mode = kv::KvSparseMode::kStreaming;
  window.budget_tokens = 8 * 16;
  const EvictRun evicted = Generate({}, ev, 20, 15, P);
  const EvictRun sparse = Generate(window, {}, 20, 15, P);
  const EvictRun exact = Generate({}, {}, 20, 15, P);
  ASSERT_EQ(evicted.logits.size(), 15u);
  EXPECT_EQ(evicted.evicted, 22u - 8u);
  EXPECT_EQ(evicted.logits, sparse.logits);
  EXPECT_NE(evicted.logits, exact.logits) << "eviction must have changed something";
}

TEST(EvictDecodeTest, AContextFarPastTheCacheRunsUnderTheBoundWithEveryPolicy) {
  for (kv::KvEvictMode m : kPolicies) {
    SCOPED_TRACE(kv::KvEvictModeName(m));
    kv::KvEvictOptions ev;
    ev.mode = m;
    ev.max_tokens = 160;  // 10 blocks
    ev.prefill_chunk = 64;
    const EvictRun r = Generate({}, ev, 60, 40);  // a prompt of about 1000 tokens
    ASSERT_EQ(r.logits.size(), 40u);
    EXPECT_EQ(r.n_blocks, (160 + 64) / 16 + 1) << "the cache is sized for the bound, not -c";
    for (size_t i = 0; i < r.live.size(); ++i) ASSERT_LE(r.live[i], 10) << "step " << i;
    EXPECT_GT(r.evicted, 50u);
    for (const auto& l : r.logits)
      for (float x : l) ASSERT_TRUE(std::isfinite(x));
  }
}

}  // namespace
}  // namespace tierlm
