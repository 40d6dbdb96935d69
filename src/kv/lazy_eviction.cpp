// LazyEviction at block granularity: a query "hits" a block when it puts more than a fair
// share (1 / the blocks it can see) of its attention there. Each block remembers its last
// hit and its maximum recurrence interval (the longest gap between two hits). A block idle
// for less than that interval is expected to be attended again; the block that has
// overstayed its interval the most goes: score = interval - idle time, lowest first.
#include <algorithm>

#include "kv/eviction_policies.h"

namespace tierlm::kv {
namespace {

class LazyEviction final : public EvictionPolicy {
 public:
  explicit LazyEviction(int32_t block_size) : block_size_(block_size) {}
  bool wants_attention() const override { return true; }
  void ObserveAttention(int64_t pos, std::span<const float> mass) override {
    Grow(mass.size(), pos);
    int64_t seen = 0;
    for (float m : mass) seen += m > 0;
    const float fair = seen > 0 ? 1.0f / static_cast<float>(seen) : 1.0f;
    for (size_t i = 0; i < mass.size(); ++i) {
      if (mass[i] <= fair) continue;
      Block& b = blocks_[i];
      b.interval = std::max(b.interval, pos - b.last_hit);
      b.last_hit = pos;
    }
    now_ = pos;
  }
  int64_t Victim(std::span<const int64_t> candidates) override {
    std::vector<double> score(blocks_.size(), 0.0);
    for (size_t i = 0; i < blocks_.size(); ++i)
      score[i] = static_cast<double>(blocks_[i].interval) - static_cast<double>(now_ - blocks_[i].last_hit);
    // A block never observed scores 0 (as if just hit, no interval).
    return LowestScore(candidates, score);
  }
  void Truncate(int64_t length) override {
    const size_t keep = static_cast<size_t>(length / block_size_);
    if (blocks_.size() > keep) blocks_.resize(keep);
    for (Block& b : blocks_) {
      b.last_hit = std::min(b.last_hit, length - 1);
      b.interval = std::min(b.interval, length);
    }
    now_ = std::min(now_, length - 1);
  }

 private:
  struct Block {
    int64_t last_hit = 0;  // a block counts as hit when its first query sees it
    int64_t interval = 0;
  };
  void Grow(size_t n, int64_t pos) {
    while (blocks_.size() < n) blocks_.push_back({pos, 0});
  }
  int32_t block_size_;
  std::vector<Block> blocks_;
  int64_t now_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLazyEviction(int32_t block_size) { return std::make_unique<LazyEviction>(block_size); }

}  // namespace tierlm::kv
