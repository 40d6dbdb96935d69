#include "tiers/first_fit_allocator.h"

#include <algorithm>
#include <cassert>

namespace tierlm {

FirstFitAllocator::FirstFitAllocator(uint64_t capacity, uint64_t granule)
    : capacity_(capacity / granule * granule), granule_(granule) {
  if (capacity_) free_[0] = capacity_;
}

std::optional<uint64_t> FirstFitAllocator::Allocate(uint64_t bytes) {
  if (bytes == 0) return std::nullopt;
  const uint64_t need = (bytes + granule_ - 1) / granule_ * granule_;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < need) continue;
    const uint64_t at = it->first, run = it->second;
    free_.erase(it);
    if (run > need) free_[at + need] = run - need;
    used_[at] = need;
    allocated_ += need;
    peak_allocated_ = std::max(peak_allocated_, allocated_);
    return at;
  }
  return std::nullopt;
}

void FirstFitAllocator::Free(uint64_t offset) {
  auto u = used_.find(offset);
  assert(u != used_.end() && "FirstFitAllocator::Free of an offset not allocated");
  if (u == used_.end()) return;
  uint64_t at = offset, len = u->second;
  used_.erase(u);
  allocated_ -= len;
  auto next = free_.lower_bound(at);
  if (next != free_.end() && next->first == at + len) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == at) {
      at = prev->first;
      len += prev->second;
      free_.erase(prev);
    }
  }
  free_[at] = len;
}

uint64_t FirstFitAllocator::largest_free_run() const {
  uint64_t best = 0;
  for (const auto& [at, len] : free_) best = std::max(best, len);
  return best;
}

uint64_t FirstFitAllocator::SizeAt(uint64_t offset) const {
  auto u = used_.find(offset);
  return u == used_.end() ? 0 : u->second;
}

}  // namespace tierlm
