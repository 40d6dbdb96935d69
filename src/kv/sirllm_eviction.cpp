// SirLLM at block granularity: a block's score is the surprisal (-log p under the model) of
// its tokens, summed: blocks of predictable filler go first, blocks of surprising tokens
// (names, numbers, new facts) stay. SirLLM's decay between dialogue rounds is left out: a
// decay that is the same for every block does not change which is lowest.
#include "kv/eviction_policies.h"

namespace tierlm::kv {
namespace {

class SirLlmEviction final : public EvictionPolicy {
 public:
  explicit SirLlmEviction(int32_t block_size) : block_size_(block_size) {}
  bool wants_surprisal() const override { return true; }
  void ObserveSurprisal(int64_t pos, float nats) override {
    const size_t b = static_cast<size_t>(pos / block_size_);
    if (score_.size() <= b) score_.resize(b + 1, 0.0);
    score_[b] += nats;
  }
  int64_t Victim(std::span<const int64_t> candidates) override { return LowestScore(candidates, score_); }
  void Truncate(int64_t length) override { TruncateScores(score_, length, block_size_); }

 private:
  int32_t block_size_;
  std::vector<double> score_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeSirLlmEviction(int32_t block_size) {
  return std::make_unique<SirLlmEviction>(block_size);
}

}  // namespace tierlm::kv
