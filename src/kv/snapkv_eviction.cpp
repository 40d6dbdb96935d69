// SnapKV at block granularity: a block's score is the attention the last `window` queries
// put on it (the observation window; SnapKV takes it at the prompt's end, here it slides
// with every query so that decoding under a bound keeps choosing the same way).
#include <deque>

#include "kv/eviction_policies.h"

namespace tierlm::kv {
namespace {

class SnapKvEviction final : public EvictionPolicy {
 public:
  SnapKvEviction(int32_t block_size, int32_t window) : block_size_(block_size), window_(window) {}
  bool wants_attention() const override { return true; }
  void ObserveAttention(int64_t pos, std::span<const float> mass) override {
    recent_.push_back({pos, std::vector<float>(mass.begin(), mass.end())});
    if (static_cast<int32_t>(recent_.size()) > window_) recent_.pop_front();
  }
  int64_t Victim(std::span<const int64_t> candidates) override {
    std::vector<double> score;
    for (const auto& q : recent_) AddScores(score, q.mass);
    return LowestScore(candidates, score);
  }
  void Truncate(int64_t length) override {
    while (!recent_.empty() && recent_.back().pos >= length) recent_.pop_back();
    const size_t keep = static_cast<size_t>(length / block_size_);
    for (auto& q : recent_)
      if (q.mass.size() > keep) q.mass.resize(keep);
  }

 private:
  struct Query {
    int64_t pos;
    std::vector<float> mass;
  };
  int32_t block_size_, window_;
  std::deque<Query> recent_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeSnapKvEviction(int32_t block_size, int32_t window) {
  return std::make_unique<SnapKvEviction>(block_size, window);
}

}  // namespace tierlm::kv
