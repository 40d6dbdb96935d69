// H2O (heavy-hitter oracle) at block granularity: a block's score is the attention every
// query so far put on it; the lightest goes.
#include "kv/eviction_policies.h"

namespace tierlm::kv {
namespace {

class H2oEviction final : public EvictionPolicy {
 public:
  explicit H2oEviction(int32_t block_size) : block_size_(block_size) {}
  bool wants_attention() const override { return true; }
  void ObserveAttention(int64_t, std::span<const float> mass) override { AddScores(score_, mass); }
  int64_t Victim(std::span<const int64_t> candidates) override { return LowestScore(candidates, score_); }
  void Truncate(int64_t length) override { TruncateScores(score_, length, block_size_); }

 private:
  int32_t block_size_;
  std::vector<double> score_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeH2oEviction(int32_t block_size) { return std::make_unique<H2oEviction>(block_size); }

}  // namespace tierlm::kv
