// Eviction orders of the expert-cache policies (LfuDecayPolicy, ScorePolicy) on tiny pools.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "tiers/lfu_decay_policy.h"
#include "tiers/score_policy.h"

#include "policy_test_util.h"

namespace tierlm {
namespace {

using testing::Victims;

// Inserts (if new) and acquires, like the manager on a miss or a hit.
void Use(EvictionPolicy& p, EntryId id, std::vector<EntryId>& resident) {
  if (std::find(resident.begin(), resident.end(), id) == resident.end()) {
    p.OnInsert(id);
    resident.push_back(id);
  }
  p.OnAccess(id);
}

TEST(TiersPolicyLfuDecay, LeastFrequentFirstWithSlowDecay) {
  LfuDecayPolicy p(LfuDecayOptions{1e12});
  std::vector<EntryId> r;
  for (EntryId id : {1, 2, 3, 1, 1, 2}) Use(p, id, r);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{3, 2, 1}));  // used 1, 2, 3 times
  EXPECT_NEAR(p.Heat(1), 3.0, 1e-9);
}

TEST(TiersPolicyLfuDecay, FastDecayFavoursTheRecent) {
  // Half-life one access: entry 1's three uses weigh 1.75 right after them, 0.875 one
  // access later, below entry 2's single fresh use.
  LfuDecayPolicy fast(LfuDecayOptions{1});
  LfuDecayPolicy slow(LfuDecayOptions{1e12});
  for (EvictionPolicy* p : {static_cast<EvictionPolicy*>(&fast), static_cast<EvictionPolicy*>(&slow)}) {
    std::vector<EntryId> r;
    for (EntryId id : {1, 1, 1, 2}) Use(*p, id, r);
  }
  EXPECT_NEAR(fast.Heat(1), 0.875, 1e-12);
  EXPECT_NEAR(fast.Heat(2), 1.0, 1e-12);
  EXPECT_EQ(Victims(fast), (std::vector<EntryId>{1, 2}));
  EXPECT_EQ(Victims(slow), (std::vector<EntryId>{2, 1}));
}

TEST(TiersPolicyLfuDecay, FrequencySurvivesEvictionAndTiesGoToTheOlder) {
  LfuDecayPolicy p(LfuDecayOptions{1e12});
  std::vector<EntryId> r;
  for (EntryId id : {1, 1, 1, 2, 3, 3}) Use(p, id, r);
  p.OnErase(1);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{2, 3}));
  p.OnInsert(1);  // back, with its three uses
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{2, 3, 1}));
  p.OnInsert(4);  // inserted, not yet used (a prefetch): heat 0, first victim
  EXPECT_EQ(Victims(p).front(), 4u);
  // Equal heat: the one used longer ago leaves first.
  LfuDecayPolicy q(LfuDecayOptions{1e300});
  std::vector<EntryId> rq;
  for (EntryId id : {7, 5}) Use(q, id, rq);
  EXPECT_EQ(Victims(q), (std::vector<EntryId>{7, 5}));
}

// 4 layers of 8 experts: id = layer * 8 + expert.
int32_t LayerOf(EntryId id) { return static_cast<int32_t>(id / 8); }

TEST(TiersPolicyScore, LayerTermEvictsTheLayerJustRunFirst) {
  ScorePolicy p(4, LayerOf, ScorePolicyOptions{.freq_weight = 0, .recency_weight = 0, .layer_weight = 1});
  std::vector<EntryId> r;
  for (EntryId id : {0, 8, 16, 24, 8}) Use(p, id, r);
  // Last access at layer 1: layer 2 runs next. Distances: L2 0, L3 1, L0 2, L1 3.
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{8, 0, 24, 16}));
}

TEST(TiersPolicyScore, RecencyTermIsLru) {
  ScorePolicy p(4, LayerOf, ScorePolicyOptions{.freq_weight = 0, .recency_weight = 1, .layer_weight = 0});
  std::vector<EntryId> r;
  for (EntryId id : {0, 8, 16, 24, 8}) Use(p, id, r);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{0, 16, 24, 8}));
}

TEST(TiersPolicyScore, FrequencyTermIsLfu) {
  ScorePolicy p(4, LayerOf,
                ScorePolicyOptions{.freq_weight = 1, .recency_weight = 0, .layer_weight = 0,
                                   .freq_half_life_accesses = 1e12});
  std::vector<EntryId> r;
  for (EntryId id : {3, 9, 9, 9, 17, 17}) Use(p, id, r);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{3, 17, 9}));
}

TEST(TiersPolicyScore, CombinedScoresByHand) {
  ScorePolicy p(4, LayerOf,
                ScorePolicyOptions{.freq_weight = 0, .recency_weight = 1, .layer_weight = 1,
                                   .recency_half_life_accesses = 1});
  std::vector<EntryId> r;
  for (EntryId id : {0, 8, 16}) Use(p, id, r);
  // Next layer 3. Recency 2^-age: 0.25, 0.5, 1. Proximity 1 - distance/4: L0 0.75, L1 0.5, L2 0.25.
  EXPECT_DOUBLE_EQ(p.Score(0), 1.0);
  EXPECT_DOUBLE_EQ(p.Score(8), 1.0);
  EXPECT_DOUBLE_EQ(p.Score(16), 1.25);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{0, 8, 16}));  // tie: the older use first
  p.OnErase(0);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{8, 16}));
}

}  // namespace
}  // namespace tierlm
