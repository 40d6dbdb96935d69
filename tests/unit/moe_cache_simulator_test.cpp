// The cache simulators: known sequences with hand-computed hits, Belady as an upper bound
// on every policy, the decode access order and synthetic locality.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "moe/cache_simulator.h"
#include "moe/moe_report.h"
#include "moe/synthetic_locality.h"
#include "tiers/lru_policy.h"
#include "tiers/score_policy.h"

namespace tierlm {
namespace {

// The textbook reference string: 3 frames give LRU 10 faults, MIN 7.
const std::vector<EntryId> kClassic = {1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5};

TEST(MoeCacheSimulator, ClassicReferenceString) {
  LruPolicy lru;
  const CacheSimResult l = SimulateCache(kClassic, lru, 3);
  EXPECT_EQ(l.misses, 10);
  EXPECT_EQ(l.hits, 2);
  const CacheSimResult b = SimulateBelady(kClassic, 3);
  EXPECT_EQ(b.misses, 7);
  EXPECT_EQ(b.hits, 5);
  EXPECT_EQ(SimulateBelady(kClassic, 5).misses, 5);  // compulsory misses only
  EXPECT_EQ(SimulateBelady(kClassic, 0).hits, 0);
}

TEST(MoeCacheSimulator, CyclicSweepLruHitsNothingScorePolicyDoes) {
  // One expert per layer, 4 layers, capacity 3: each decode step sweeps 4 entries.
  std::vector<EntryId> sweep;
  for (int t = 0; t < 10; ++t)
    for (EntryId l = 0; l < 4; ++l) sweep.push_back(l * 8);
  LruPolicy lru;
  EXPECT_EQ(SimulateCache(sweep, lru, 3).hits, 0);
  ScorePolicy score(4, [](EntryId id) { return static_cast<int32_t>(id / 8); });
  const CacheSimResult s = SimulateCache(sweep, score, 3);
  const CacheSimResult b = SimulateBelady(sweep, 3);
  EXPECT_GT(s.hits, 0);
  EXPECT_GE(b.hits, s.hits);
  EXPECT_EQ(b.hits, 24);  // MIN on a cycle of 4 in 3 frames: 2 of every 3 accesses after warm-up
}

RoutingTrace RandomTrace(uint64_t seed, int64_t n_tokens, int32_t n_layer, int32_t n_expert, int32_t n_used,
                         double skew) {
  std::mt19937_64 rng(seed);
  RoutingTrace t(n_layer, n_expert, n_used);
  std::vector<double> popularity(static_cast<size_t>(n_expert));
  for (int32_t e = 0; e < n_expert; ++e) popularity[static_cast<size_t>(e)] = 1.0 / std::pow(e + 1.0, skew);
  std::vector<int32_t> experts(static_cast<size_t>(n_layer * n_used));
  std::vector<float> weights(experts.size(), 1.0f / static_cast<float>(n_used));
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    for (int32_t l = 0; l < n_layer; ++l) {
      std::vector<double> w = popularity;
      for (int32_t k = 0; k < n_used; ++k) {
        std::discrete_distribution<int32_t> pick(w.begin(), w.end());
        const int32_t e = pick(rng);
        w[static_cast<size_t>(e)] = 0;  // distinct experts within a token
        experts[static_cast<size_t>(l * n_used + k)] = e;
      }
    }
    EXPECT_TRUE(t.AppendToken(experts.data(), weights.data()).ok());
  }
  return t;
}

TEST(MoeCacheSimulator, BeladyBoundsEveryPolicyOnRandomTraces) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    const RoutingTrace t = RandomTrace(seed, 60, 3, 6, 2, seed * 0.5);
    const int64_t all = 3 * 6;
    for (int64_t cap = 1; cap <= all; cap += 2) {
      const CacheSimResult best = SimulateBelady(t, cap);
      EXPECT_EQ(best.hits + best.misses, 60 * 3 * 2);
      for (const char* name : {"lru", "lfu-decay", "score"}) {
        auto r = SimulatePolicy(name, t, cap);
        ASSERT_TRUE(r.ok());
        EXPECT_GE(best.hits, r->hits) << name << " seed " << seed << " capacity " << cap;
        EXPECT_EQ(r->hits + r->misses, 60 * 3 * 2);
      }
    }
    // With room for every expert, only first uses miss.
    LruPolicy lru;
    EXPECT_EQ(SimulateCache(t, lru, all).misses, SimulateBelady(t, all).misses);
  }
}

TEST(MoeCacheSimulator, DecodeOrderIsTokenLayerAscendingExpert) {
  RoutingTrace t(2, 4, 2);
  const int32_t e[] = {3, 1, 0, 2, 2, 0, 1, 3};
  const float w[] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  ASSERT_TRUE(t.AppendToken(e, w).ok());
  ASSERT_TRUE(t.AppendToken(e + 4, w).ok());
  EXPECT_EQ(ExpertAccesses(t), (std::vector<EntryId>{1, 3, 4, 6, 0, 2, 5, 7}));
  EXPECT_EQ(SimulatePolicy("nope", t, 2).status().code(), StatusCode::kNotFound);
}

TEST(MoeSyntheticLocality, EndpointsAndDeterminism) {
  const RoutingTrace t = RandomTrace(7, 40, 2, 8, 2, 0.0);
  auto same = WithLocality(t, 0.0, 3);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(ExpertAccesses(*same), ExpertAccesses(t));
  auto frozen = WithLocality(t, 1.0, 3);
  ASSERT_TRUE(frozen.ok());
  for (int64_t tok = 0; tok < t.n_tokens(); ++tok)
    for (int32_t l = 0; l < 2; ++l)
      for (int32_t k = 0; k < 2; ++k) EXPECT_EQ(frozen->expert(tok, l, k), t.expert(0, l, k));
  auto a = WithLocality(t, 0.5, 3), b = WithLocality(t, 0.5, 3);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(ExpertAccesses(*a), ExpertAccesses(*b));
  // More locality, more hits for LRU at the active-set size.
  auto hi = WithLocality(t, 0.9, 3);
  ASSERT_TRUE(hi.ok());
  LruPolicy l0, l9;
  EXPECT_GT(SimulateCache(*hi, l9, 4).hits, SimulateCache(t, l0, 4).hits);
  EXPECT_EQ(WithLocality(t, 1.5, 3).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierlm
