// The expert cache inside the live tiered store: experts are never pinned, they follow the
// chosen expert policy behind the dense pinned set and ring (ClassSplitPolicy), the logits
// stay exact under every policy, and the bench reports the cache, the prefetch and the
// routing statistics. Also: routing statistics and the hit-rate plot on known traces.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <span>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "io/posix_storage_env.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"
#include "moe/hit_rate_plot.h"
#include "moe/routing_stats.h"
#include "policy_test_util.h"
#include "synth/synth_model.h"
#include "test_paths.h"
#include "tiers/class_split_policy.h"
#include "tiers/lru_policy.h"
#include "tiers/policy_factory.h"
#include "tiers/tiered_weight_store.h"

namespace tierlm {
namespace {

using testing::Victims;

TEST(ClassSplitPolicyTest, DenseRingGoesFirstThenExpertsInTheirPolicysOrder) {
  // Ids 10.. are experts.
  ClassSplitPolicy p([](EntryId id) { return id >= 10; }, std::make_unique<LruPolicy>());
  p.Pin(0);
  for (EntryId id : {0u, 10u, 1u, 11u, 2u, 12u}) p.OnInsert(id);
  EXPECT_TRUE(p.PinnedForever(0));
  EXPECT_FALSE(p.PinnedForever(10));
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{1, 2, 10, 11, 12}));
  p.OnAccess(10);  // LRU: 10 becomes the most recent expert
  p.OnAccess(1);   // the dense ring ignores accesses (oldest arrival first)
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{1, 2, 11, 12, 10}));
  p.OnErase(1);
  p.OnErase(12);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{2, 11, 10}));
  // Stopping early stops both halves.
  std::vector<EntryId> first;
  p.VisitVictims([&](EntryId id) {
    first.push_back(id);
    return false;
  });
  EXPECT_EQ(first, (std::vector<EntryId>{2}));
}

TEST(PolicyFactoryTest, NamesAndLayers) {
  for (const std::string& n : OnlinePolicyNames()) {
    auto p = MakeEvictionPolicy(n, 4, [](EntryId) { return 0; });
    ASSERT_TRUE(p.ok()) << n;
  }
  auto bad = MakeEvictionPolicy("fifo", 4, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("lfu-decay"), std::string::npos);
  EXPECT_EQ(LayerOfTensorName("blk.12.ffn_up_exps.weight#3"), 12);
  EXPECT_EQ(LayerOfTensorName("blk.0.attn_q.weight"), 0);
  EXPECT_EQ(LayerOfTensorName("token_embd.weight"), -1);
  EXPECT_EQ(LayerOfTensorName("blk.x.attn_q.weight"), -1);
  EXPECT_EQ(LayerOfTensorName("blk.3"), -1);
}

class ExpertCacheStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir("expert-cache");
    path_ = (dir_ / "moe.gguf").string();
    auto spec = SynthPreset("moe-tiny", "llama");
    ASSERT_TRUE(spec.has_value());
    ASSERT_TRUE(WriteSynthModel(*spec, SynthType::kQ8_0, 11, path_, &pool_).ok());
    auto f = gguf::GgufFile::Open(path_);
    ASSERT_TRUE(f.ok());
    file_ = std::move(*f);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Decode-style logits for random-ish tokens.
  Status Run(WeightStore* store, bool gate_ahead, std::vector<float>* out) {
    TIERLM_ASSIGN_OR_RETURN(auto model, LlamaModel::Create(file_, store));
    model->moe_ffn().set_gate_ahead(gate_ahead);
    TIERLM_ASSIGN_OR_RETURN(auto kv, KvCache::Create(model->kv_shape(), 64));
    uint32_t x = 7;
    for (int i = 0; i < 24; ++i) {
      x = x * 1103515245u + 12345u;
      const int32_t tok = static_cast<int32_t>(3 + (x >> 8) % 500);
      std::vector<float> one;
      TIERLM_RETURN_IF_ERROR(model->Forward({&tok, 1}, kv, false, &one, &pool_));
      out->insert(out->end(), one.begin(), one.end());
    }
    return Status::Ok();
  }

  std::filesystem::path dir_;
  std::string path_;
  gguf::GgufFile file_;
  ThreadPool pool_{2};
};

TEST_F(ExpertCacheStoreTest, ExpertsAreCachedNotPinnedAndLogitsStayExactUnderEveryPolicy) {
  auto mem = InMemoryWeightStore::Open(file_);
  ASSERT_TRUE(mem.ok());
  std::vector<float> want;
  ASSERT_TRUE(Run(mem->get(), false, &want).ok());

  uint64_t dense = 0, experts = 0;
  auto all = TieredWeightStore::Plan(file_, TieredWeightStoreOptions{.budget_bytes = 1ull << 40});
  ASSERT_TRUE(all.ok());
  for (const WeightUnit& u : all->units) (u.expert ? experts : dense) += u.slot_bytes;
  // Room for every dense weight and about a third of the experts.
  const uint64_t budget = dense + experts / 3;
  for (const std::string& policy : OnlinePolicyNames()) {
    for (bool gate_ahead : {false, true}) {
      SCOPED_TRACE(policy + (gate_ahead ? " + gate-ahead" : ""));
      TieredWeightStoreOptions o;
      o.budget_bytes = budget;
      o.expert_policy = policy;
      io::PosixStorageEnv env;
      auto store = TieredWeightStore::Open(file_, &env, o);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      for (const WeightUnit& u : (*store)->placement().units) {
        if (u.expert) EXPECT_FALSE(u.pinned) << u.name;
        else EXPECT_TRUE(u.pinned) << u.name;  // the dense weights fit and stay
      }
      EXPECT_NE(std::string((*store)->manager().policy()->name()).find(policy), std::string::npos);
      const uint64_t dense_misses_at_open =
          (*store)->residency_stats().per_class[static_cast<int>(EntryClass::kWeight)].misses;
      std::vector<float> got;
      ASSERT_TRUE(Run(store->get(), gate_ahead, &got).ok());
      EXPECT_EQ(got, want);
      const ResidencyStats rs = (*store)->residency_stats();
      const ClassStats& x = rs.per_class[static_cast<int>(EntryClass::kExpert)];
      EXPECT_GT(x.acquires, 0u);
      EXPECT_GT(x.hits, 0u) << "a third of the experts cached must serve some acquires";
      EXPECT_GT(x.misses, 0u) << "two thirds of the experts are not cached";
      EXPECT_GT(x.evictions, 0u);
      EXPECT_LE(rs.peak_allocated_bytes, rs.capacity_bytes);
      EXPECT_EQ(rs.per_class[static_cast<int>(EntryClass::kWeight)].misses, dense_misses_at_open)
          << "dense weights are pinned: no misses after loading";
      // A layer starts the reads of all its routed experts at once (and gate-ahead those
      // of the next layer): acquires find them read or in flight.
      EXPECT_GT(x.prefetches, 0u);
      EXPECT_GT(x.prefetches_used, 0u);
      EXPECT_LE(x.prefetch_hits, x.hits);
      EXPECT_LE(x.demand_misses, x.misses);
    }
  }
  TieredWeightStoreOptions o;
  o.budget_bytes = budget;
  o.expert_policy = "random";
  io::PosixStorageEnv env;
  auto bad = TieredWeightStore::Open(file_, &env, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("random"), std::string::npos);
}

TEST(HiddenMissShareTest, FromCounters) {
  ClassStats s;
  EXPECT_EQ(s.HiddenMissShare(), 0.0);
  // 4 demand misses of 10 ms each: an unhidden miss costs 10 ms. 6 more would-be misses
  // were served by prefetch (4 finished in time, 2 still reading, waited 5 ms each).
  s.demand_misses = 4;
  s.demand_miss_nanos = 40'000'000;
  s.misses = 4 + 2;
  s.prefetch_hits = 4;
  s.stall_nanos = 40'000'000 + 2 * 5'000'000;
  // Would-be: 10 misses x 10 ms = 100 ms; waited 50 ms: half hidden.
  EXPECT_NEAR(s.HiddenMissShare(), 0.5, 1e-12);
  // A later snapshot minus an earlier one: the counts in between.
  ClassStats later = s;
  later += s;
  later -= s;
  EXPECT_EQ(later.misses, s.misses);
  EXPECT_EQ(later.stall_nanos, s.stall_nanos);
  EXPECT_EQ(later.prefetch_hits, s.prefetch_hits);
  EXPECT_EQ(later.demand_miss_nanos, s.demand_miss_nanos);
}

RoutingTrace MakeTrace(int32_t L, int32_t X, int32_t K, const std::vector<std::vector<int32_t>>& tokens) {
  RoutingTrace t(L, X, K);
  for (const auto& row : tokens) {
    std::vector<float> w(row.size(), 1.0f / K);
    EXPECT_TRUE(t.AppendToken(row.data(), w.data()).ok());
  }
  return t;
}

TEST(RoutingStatsTest, OverlapCoverageAndSkew) {
  // One layer, 10 experts, top-2.
  RoutingTrace same = MakeTrace(1, 10, 2, {{0, 1}, {0, 1}, {1, 0}, {0, 1}});
  RoutingStats s = ComputeRoutingStats(same);
  EXPECT_DOUBLE_EQ(s.consecutive_overlap, 1.0);
  EXPECT_DOUBLE_EQ(s.chance_overlap, 0.2);
  EXPECT_DOUBLE_EQ(s.coverage, 0.2);
  EXPECT_DOUBLE_EQ(s.top10_share, 0.5);  // the top 1 of 10 experts takes half the uses
  RoutingTrace fresh = MakeTrace(1, 10, 2, {{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}});
  s = ComputeRoutingStats(fresh);
  EXPECT_DOUBLE_EQ(s.consecutive_overlap, 0.0);
  EXPECT_DOUBLE_EQ(s.coverage, 1.0);
  EXPECT_DOUBLE_EQ(s.top10_share, 0.1);
  RoutingTrace half = MakeTrace(1, 10, 2, {{0, 1}, {1, 2}, {2, 3}});
  EXPECT_DOUBLE_EQ(ComputeRoutingStats(half).consecutive_overlap, 0.5);
  EXPECT_EQ(ComputeRoutingStats(RoutingTrace(1, 4, 1)).coverage, 0.0);
}

TEST(HitRatePlotTest, CurvesAreMonotoneForBeladyAndTheSvgHasEveryPolicy) {
  std::vector<std::vector<int32_t>> rows;
  uint32_t x = 1;
  for (int t = 0; t < 200; ++t) {
    std::vector<int32_t> row;
    for (int l = 0; l < 3; ++l) {
      x = x * 1664525u + 1013904223u;
      const int32_t a = static_cast<int32_t>((x >> 16) % 8);
      row.push_back(a);
      row.push_back((a + 1 + static_cast<int32_t>((x >> 8) % 7)) % 8);
    }
    rows.push_back(row);
  }
  RoutingTrace t = MakeTrace(3, 8, 2, rows);
  auto curves = ComputeHitRateCurves(t, 8);
  ASSERT_TRUE(curves.ok());
  ASSERT_EQ(curves->size(), 4u);
  for (const auto& c : *curves) {
    ASSERT_FALSE(c.capacity.empty());
    EXPECT_EQ(c.capacity.front(), 2);
    EXPECT_EQ(c.capacity.back(), 24);  // every expert: only compulsory misses
    for (size_t i = 1; i < c.capacity.size(); ++i) EXPECT_GT(c.capacity[i], c.capacity[i - 1]);
  }
  const auto& belady = curves->back();
  ASSERT_EQ(belady.policy, "belady");
  for (size_t i = 1; i < belady.hit_rate.size(); ++i) EXPECT_GE(belady.hit_rate[i], belady.hit_rate[i - 1]);
  for (const auto& c : *curves) {
    EXPECT_LE(c.hit_rate.back(), belady.hit_rate.back() + 1e-12);
    for (size_t i = 0; i < c.hit_rate.size(); ++i) EXPECT_LE(c.hit_rate[i], belady.hit_rate[i] + 1e-12) << c.policy;
  }
  const std::string svg = HitRateSvg(*curves, "a <title> & more");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("a &lt;title&gt; &amp; more"), std::string::npos);
  for (const char* p : {">lru<", ">lfu-decay<", ">score<", ">belady<"}) EXPECT_NE(svg.find(p), std::string::npos) << p;
  size_t polylines = 0;
  for (size_t at = 0; (at = svg.find("<polyline", at)) != std::string::npos; ++at) ++polylines;
  EXPECT_EQ(polylines, 4u);

  const auto dir = testing::ScratchDir("hit-plot");
  const std::string out = (dir / "p.svg").string();
  ASSERT_TRUE(WriteHitRatePlot(out, *curves, "t").ok());
  std::ifstream f(out);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, HitRateSvg(*curves, "t"));
  EXPECT_FALSE(WriteHitRatePlot((dir / "no" / "such" / "p.svg").string(), *curves, "t").ok());
  std::filesystem::remove_all(dir);
}

TEST(MoeBenchReportTest, BenchUnderABudgetReportsTheExpertCache) {
  const auto dir = testing::ScratchDir("moe-bench");
  const std::string model = (dir / "moe.gguf").string();
  const std::string bin = testing::Quote(testing::TierlmBinary());
  auto r = testing::RunShell(bin + " synth --preset moe-tiny --type q8_0 -o " + testing::Quote(model));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = testing::RunShell(bin + " bench -m " + testing::Quote(model) +
                        " -p 0 -n 8 -r 2 -t 2 --no-bandwidth --mem-budget 16M --moe-policy score --moe-report");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* want : {"tg8 routing (16 random tokens, top-2 of 8)", "consecutive tokens share", "gate-ahead:",
                           "expert cache (pinned-set + experts: score)", "miss latency hidden",
                           "this budget's cache", "belady"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  r = testing::RunShell(bin + " bench -m " + testing::Quote(model) +
                        " -p 0 -n 4 -r 1 --no-bandwidth --mem-budget 24M --moe-policy nope");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("nope"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
