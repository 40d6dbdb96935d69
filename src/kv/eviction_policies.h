// The eviction policies behind eviction_policy.h, one file each, and what they share.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kv/eviction_policy.h"

namespace tierlm::kv {

std::unique_ptr<EvictionPolicy> MakeStreamingEviction();
std::unique_ptr<EvictionPolicy> MakeH2oEviction(int32_t block_size);
std::unique_ptr<EvictionPolicy> MakeSnapKvEviction(int32_t block_size, int32_t window);
std::unique_ptr<EvictionPolicy> MakeSirLlmEviction(int32_t block_size);
std::unique_ptr<EvictionPolicy> MakeLazyEviction(int32_t block_size);
std::unique_ptr<EvictionPolicy> MakeRetentionEviction(int32_t block_size, double decay);

// The candidate with the lowest score (a missing score is 0), the oldest of equals.
inline int64_t LowestScore(std::span<const int64_t> candidates, const std::vector<double>& score) {
  int64_t best = candidates.front();
  double best_score = 0;
  bool first = true;
  for (int64_t c : candidates) {
    const double s = c < static_cast<int64_t>(score.size()) ? score[static_cast<size_t>(c)] : 0.0;
    if (first || s < best_score) {
      best = c;
      best_score = s;
      first = false;
    }
  }
  return best;
}

// Per-block scores that follow a sequence: grown as blocks appear, cut on truncation.
inline void AddScores(std::vector<double>& score, std::span<const float> mass) {
  if (score.size() < mass.size()) score.resize(mass.size(), 0.0);
  for (size_t i = 0; i < mass.size(); ++i) score[i] += mass[i];
}
inline void TruncateScores(std::vector<double>& score, int64_t length, int32_t block_size) {
  const size_t keep = static_cast<size_t>(length / block_size);  // a partly dropped block restarts
  if (score.size() > keep) score.resize(keep);
}

}  // namespace tierlm::kv
