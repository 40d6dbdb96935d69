// SRP and SCH (moe/routing_consistency.h): the hand-computed cases of issue 15 (values the
// authors' code gives), windows and caches that stop at sequence boundaries, the eviction
// rule, model-level merging, and tierlm against the slow Python reference
// (tests/reference/routing_consistency.py) on random multi-sequence traces.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "cli_runner.h"
#include "moe/moe_report.h"
#include "moe/routing_consistency.h"
#include "test_paths.h"

namespace tierlm {
namespace {

// One layer of n_expert experts, one expert per token; a -1 starts a new sequence.
RoutingTrace OneExpertTrace(int32_t n_expert, const std::vector<int32_t>& experts) {
  RoutingTrace t(1, n_expert, 1);
  const float w = 1.0f;
  for (int32_t e : experts) {
    if (e < 0) {
      EXPECT_TRUE(t.BeginSequence().ok());
      continue;
    }
    EXPECT_TRUE(t.AppendToken(&e, &w).ok());
  }
  return t;
}

TEST(MoeRoutingConsistency, SrpIsTheBestF1OfThresholdedWindowGroups) {
  // Windows [0 1] [1 0] [0 1]: tau = 1 predicts experts 0 and 1 for both tokens of each:
  // TP 6, predictions 12, actual 6: F1 = 12 / 18.
  const SrpResult r = SegmentRoutingBestPerformance(OneExpertTrace(4, {0, 1, 0, 1}), 2);
  EXPECT_NEAR(r.f1, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(r.threshold, 1);
  EXPECT_EQ(r.windows, 3);
  EXPECT_DOUBLE_EQ(r.predicted, 12);
  EXPECT_DOUBLE_EQ(r.actual, 6);

  const RoutingTrace t = OneExpertTrace(4, {0, 0, 1, 2});
  EXPECT_DOUBLE_EQ(SegmentRoutingBestPerformance(t, 1).f1, 1.0);
  // [0 0 1] [0 1 2], tau 1: TP 6, predictions 3 * (2 + 3) = 15: F1 = 12 / 21.
  EXPECT_NEAR(SegmentRoutingBestPerformance(t, 3).f1, 4.0 / 7.0, 1e-12);
  // One window: tau 1 and tau 2 both give 1/2.
  EXPECT_DOUBLE_EQ(SegmentRoutingBestPerformance(t, 4).f1, 0.5);
  // No full window: no figure.
  EXPECT_FALSE(SegmentRoutingBestPerformance(t, 5).has_windows());
  EXPECT_DOUBLE_EQ(SegmentRoutingBestPerformance(t, 5).f1, 0.0);
}

TEST(MoeRoutingConsistency, WindowsAndCachesStopAtSequenceBoundaries) {
  // [0 0] then [1 1]: each window uses one expert twice, F1 1. As one sequence the window
  // [0 1] in the middle lowers it.
  const RoutingTrace two = OneExpertTrace(4, {0, 0, -1, 1, 1});
  ASSERT_EQ(two.sequences().size(), 2u);
  EXPECT_DOUBLE_EQ(SegmentRoutingBestPerformance(two, 2).f1, 1.0);
  EXPECT_EQ(SegmentRoutingBestPerformance(two, 2).windows, 2);
  const RoutingTrace one = OneExpertTrace(4, {0, 0, 1, 1});
  EXPECT_LT(SegmentRoutingBestPerformance(one, 2).f1, 1.0);
  // A one-expert cache starts empty in each sequence, so both first accesses find a free
  // slot: 4 hits of 4. As one sequence expert 1 misses once.
  EXPECT_DOUBLE_EQ(SegmentCacheHitRate(two, 2, 1.0, 0), 1.0);
  EXPECT_DOUBLE_EQ(SegmentCacheHitRate(one, 2, 1.0, 0), 0.75);
  // A sequence shorter than m has no window; the others still count.
  const RoutingTrace mixed = OneExpertTrace(4, {0, 0, 0, -1, 1});
  EXPECT_EQ(SegmentRoutingBestPerformance(mixed, 2).windows, 2);
  EXPECT_DOUBLE_EQ(SegmentRoutingBestPerformance(mixed, 2).f1, 1.0);
}

TEST(MoeRoutingConsistency, SchEvictsTheExpertUsedLeastInTheNextMTokens) {
  // Two slots, trace 0 1 2 0. Loading 2 evicts 1 when the window sees 0 come back (m = 4),
  // so 0 then hits; with m = 1 both count 0 uses and the older, 0, goes.
  const RoutingTrace t = OneExpertTrace(8, {0, 1, 2, 0});
  EXPECT_DOUBLE_EQ(SegmentCacheHitRate(t, 4, 2.0, 0), 0.75);
  EXPECT_DOUBLE_EQ(SegmentCacheHitRate(t, 1, 2.0, 0), 0.5);
  // First accesses that find a free slot count as hits.
  const RoutingTrace alt = OneExpertTrace(4, {0, 1, 0, 1});
  EXPECT_DOUBLE_EQ(SegmentCacheHitRate(alt, 1, 2.0, 0), 1.0);
  EXPECT_DOUBLE_EQ(SegmentCacheHitRate(alt, 1, 1.0, 0), 0.25);
  EXPECT_EQ(SchCacheSize(alt, 0.1, false), 1);   // at least one expert
  EXPECT_EQ(SchCacheSize(alt, 100.0, false), 4); // at most all of them
}

TEST(MoeRoutingConsistency, ModelLevelSchSharesOneCacheAcrossLayers) {
  // Layer 0 always uses expert 0; layer 1 alternates 0, 1. Per layer at c/k = 1: layer 0
  // hits always, layer 1 once of 4 (its first access): mean 5/8.
  RoutingTrace t(2, 2, 1);
  const float w[2] = {1, 1};
  for (int32_t i = 0; i < 4; ++i) {
    const int32_t e[2] = {0, i % 2};
    ASSERT_TRUE(t.AppendToken(e, w).ok());
  }
  EXPECT_DOUBLE_EQ(LayerSegmentCacheHitRate(t, 2, 1.0), 0.625);
  // One cache of 2 over 4 entries: t0 both fill free slots; then layer 0's entry always
  // hits and layer 1's alternating one always misses: 5 of 8.
  EXPECT_DOUBLE_EQ(ModelSegmentCacheHitRate(t, 2, 1.0), 0.625);
  // Three slots for the 3 entries the trace uses: every access hits.
  EXPECT_EQ(SchCacheSize(t, 1.5, true), 3);
  EXPECT_DOUBLE_EQ(ModelSegmentCacheHitRate(t, 2, 1.5), 1.0);
  // Per layer 1.5 rounds to 2 slots, room for layer 1's two experts.
  EXPECT_DOUBLE_EQ(LayerSegmentCacheHitRate(t, 2, 1.5), 1.0);
}

TEST(MoeRoutingConsistency, ReportRefusesBadOptionsAndPrintsNullWithoutWindows) {
  const RoutingTrace t = OneExpertTrace(4, {0, 1, 0, 1});
  MoeReportOptions o;
  o.segment_lengths = {0};
  EXPECT_EQ(MoeReport(t, o).status().code(), StatusCode::kInvalidArgument);
  o.segment_lengths = {2};
  o.cache_ratios = {-1};
  EXPECT_EQ(MoeReportJson(t, o).status().code(), StatusCode::kInvalidArgument);
  o.segment_lengths = {2, 16};
  o.cache_ratios = {1, 2};
  auto j = MoeReportJson(t, o);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_NE(j->find("\"16\": null"), std::string::npos) << *j;
  EXPECT_NE(j->find("\"sch_model\""), std::string::npos) << *j;
  auto text = MoeReport(t, o);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("SCH(2k)"), std::string::npos) << *text;
  EXPECT_NE(text->find("n/a"), std::string::npos) << *text;
  EXPECT_EQ(MoeReport(RoutingTrace(1, 4, 1), MoeReportOptions{}).status().code(), StatusCode::kInvalidArgument);
}

// Random routing with temporal locality, in several sequences of different lengths.
RoutingTrace RandomSequences(uint64_t seed, int32_t n_layer, int32_t n_expert, int32_t n_used,
                             const std::vector<int64_t>& lengths) {
  std::mt19937_64 rng(seed);
  RoutingTrace t(n_layer, n_expert, n_used);
  std::vector<int32_t> experts(static_cast<size_t>(n_layer * n_used)), prev;
  std::vector<float> weights(experts.size(), 1.0f);
  for (size_t s = 0; s < lengths.size(); ++s) {
    EXPECT_TRUE(t.BeginSequence().ok());
    prev.clear();
    for (int64_t i = 0; i < lengths[s]; ++i) {
      if (!prev.empty() && rng() % 3 == 0) {
        experts = prev;
      } else {
        for (int32_t l = 0; l < n_layer; ++l) {
          std::vector<int32_t> pool(static_cast<size_t>(n_expert));
          for (int32_t e = 0; e < n_expert; ++e) pool[static_cast<size_t>(e)] = e;
          std::shuffle(pool.begin(), pool.end(), rng);
          // Low ids are likelier: sort a prefix sometimes.
          if (rng() % 2) std::sort(pool.begin(), pool.begin() + std::min<int32_t>(n_expert, n_used + 1));
          for (int32_t k = 0; k < n_used; ++k) experts[static_cast<size_t>(l * n_used + k)] = pool[static_cast<size_t>(k)];
        }
      }
      prev = experts;
      EXPECT_TRUE(t.AppendToken(experts.data(), weights.data()).ok());
    }
  }
  return t;
}

TEST(MoeRoutingConsistency, PythonReferenceAgrees) {
  const auto dir = testing::ScratchDir("lrc-py");
  struct Case {
    uint64_t seed;
    int32_t layers, experts, used;
    std::vector<int64_t> lengths;
  };
  const std::vector<Case> cases = {{1, 2, 6, 2, {30, 7, 18}}, {2, 3, 8, 1, {25, 3}}, {3, 1, 5, 3, {40}}};
  MoeReportOptions o;
  o.segment_lengths = {1, 3, 4, 8};
  o.cache_ratios = {1, 1.5, 2};
  o.locality.clear();
  for (const Case& c : cases) {
    const RoutingTrace t = RandomSequences(c.seed, c.layers, c.experts, c.used, c.lengths);
    const std::string trace_path = (dir / "t.trace").string(), json_path = (dir / "t.json").string();
    ASSERT_TRUE(t.Save(trace_path).ok());
    auto j = MoeReportJson(t, o);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    std::ofstream(json_path) << *j;
    const auto r = testing::RunShell(
        "/usr/bin/python3 " + testing::Quote((testing::SourceDir() / "tests/reference/routing_consistency.py").string()) +
        " " + testing::Quote(trace_path) + " --seg-lengths 1,3,4,8 --cache-ratios 1,1.5,2 --compare " +
        testing::Quote(json_path));
    EXPECT_EQ(r.exit_code, 0) << "seed " << c.seed << "\n" << r.output;
    EXPECT_NE(r.output.find("mismatches: 0"), std::string::npos) << r.output;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
