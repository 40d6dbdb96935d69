#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace tierlm {
namespace {

SamplerParams Plain(float temp) {
  SamplerParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 7;
  return p;
}

TEST(SamplerTest, GreedyTakesArgmaxLowestIdOnTies) {
  Sampler s(Plain(0.0f));
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits), 1);
  EXPECT_EQ(Sampler::Argmax(logits), 1);
}

TEST(SamplerTest, TopKOneIsGreedyAtAnyTemperature) {
  SamplerParams p = Plain(5.0f);
  p.top_k = 1;
  Sampler s(p);
  std::vector<float> logits = {0.0f, 0.5f, 0.4f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits), 1);
}

TEST(SamplerTest, SameSeedSameDraws) {
  std::vector<float> logits = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  Sampler a(Plain(1.0f)), b(Plain(1.0f));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Sample(logits), b.Sample(logits));
  SamplerParams other = Plain(1.0f);
  other.seed = 8;
  Sampler c(other), d(Plain(1.0f));
  int differ = 0;
  for (int i = 0; i < 100; ++i) differ += c.Sample(logits) != d.Sample(logits);
  EXPECT_GT(differ, 10);
}

TEST(SamplerTest, FrequenciesFollowTemperedSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.0f, 1.5f};
  const float temp = 0.7f;
  Sampler s(Plain(temp));
  const int n = 40000;
  std::map<int, int> counts;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits)]++;
  double z = 0;
  for (float l : logits) z += std::exp(l / temp);
  for (int id = 0; id < 4; ++id) {
    const double p = std::exp(logits[id] / temp) / z;
    const double sd = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(counts[id] / double(n), p, 5 * sd) << "token " << id;
  }
}

TEST(SamplerTest, TopPKeepsOnlyTheNucleus) {
  // probabilities ~ 0.64, 0.24, 0.09, 0.03: top-p 0.8 keeps the first two.
  const std::vector<float> logits = {3.0f, 2.0f, 1.0f, 0.0f};
  SamplerParams p = Plain(1.0f);
  p.top_p = 0.8f;
  Sampler s(p);
  std::map<int, int> counts;
  for (int i = 0; i < 5000; ++i) counts[s.Sample(logits)]++;
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  // p(token 2) / p(token 0) = e^-3 ~ 0.05 < 0.1: dropped; token 1 (e^-1 ~ 0.37) kept.
  const std::vector<float> logits = {3.0f, 2.0f, 0.0f};
  SamplerParams p = Plain(1.0f);
  p.min_p = 0.1f;
  Sampler s(p);
  std::map<int, int> counts;
  for (int i = 0; i < 5000; ++i) counts[s.Sample(logits)]++;
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2], 0);
}

TEST(SamplerTest, RepetitionPenaltyDiscouragesRecentTokens) {
  SamplerParams p = Plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  const std::vector<float> logits = {1.5f, 1.0f, -3.0f};
  EXPECT_EQ(s.Sample(logits), 0);
  s.Accept(0);  // 1.5 / 2 = 0.75 < 1.0
  EXPECT_EQ(s.Sample(logits), 1);
}

TEST(SamplerTest, LogitBiasShiftsAndBans) {
  SamplerParams p = Plain(0.0f);
  p.logit_bias = {{0, -100.0f}, {2, 3.0f}};
  Sampler s(p);
  const std::vector<float> logits = {5.0f, 1.0f, 0.5f};
  EXPECT_EQ(s.Sample(logits), 2);  // 0.5 + 3 beats 1.0; token 0 is banned
  SamplerParams q = Plain(1.0f);
  q.logit_bias = {{0, -100.0f}, {99, 5.0f}};  // an id out of range is ignored
  Sampler t(q);
  for (int i = 0; i < 200; ++i) EXPECT_NE(t.Sample(logits), 0);
}

TEST(SamplerTest, PresenceAndFrequencyPenalties) {
  SamplerParams p = Plain(0.0f);
  p.presence_penalty = 0.6f;
  Sampler s(p);
  const std::vector<float> logits = {1.5f, 1.0f, -3.0f};
  s.Accept(0);
  s.Accept(0);
  EXPECT_EQ(s.Sample(logits), 1);  // once, however often: 1.5 - 0.6 = 0.9 < 1.0
}

TEST(SamplerTest, FrequencyPenaltyCountsOccurrences) {
  SamplerParams p = Plain(0.0f);
  p.frequency_penalty = 0.3f;
  Sampler once(p), twice(p);
  const std::vector<float> logits = {1.5f, 1.0f, -3.0f};
  once.Accept(0);  // 1.5 - 0.3 = 1.2 > 1.0
  EXPECT_EQ(once.Sample(logits), 0);
  twice.Accept(0);
  twice.Accept(0);  // 1.5 - 0.6 = 0.9 < 1.0
  EXPECT_EQ(twice.Sample(logits), 1);
}

}  // namespace
}  // namespace tierlm
