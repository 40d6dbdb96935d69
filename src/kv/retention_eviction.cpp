// Retention scores (TRIM-KV's idea: every token's importance decays geometrically with
// age, at a rate of its own) at block granularity, with the rate taken from attention
// rather than a trained gate: each query multiplies every block's score by `decay` and
// adds the attention it put there. A block attended often and lately holds its score; one
// no longer attended fades and goes.
#include "kv/eviction_policies.h"

namespace tierlm::kv {
namespace {

class RetentionEviction final : public EvictionPolicy {
 public:
  RetentionEviction(int32_t block_size, double decay) : block_size_(block_size), decay_(decay) {}
  bool wants_attention() const override { return true; }
  void ObserveAttention(int64_t, std::span<const float> mass) override {
    for (double& s : score_) s *= decay_;
    AddScores(score_, mass);
  }
  int64_t Victim(std::span<const int64_t> candidates) override { return LowestScore(candidates, score_); }
  void Truncate(int64_t length) override { TruncateScores(score_, length, block_size_); }

 private:
  int32_t block_size_;
  double decay_;
  std::vector<double> score_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeRetentionEviction(int32_t block_size, double decay) {
  return std::make_unique<RetentionEviction>(block_size, decay);
}

}  // namespace tierlm::kv
