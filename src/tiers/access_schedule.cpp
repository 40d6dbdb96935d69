#include "tiers/access_schedule.h"

#include <algorithm>

namespace tierlm {

void AccessSchedule::Record(EntryId id) {
  if (!learned_) {
    if (trace_.size() >= kMaxTrace) return;
    trace_.push_back(id);
    const size_t n = trace_.size();
    if (n >= 3 && trace_[n - 2] == trace_[0] && trace_[n - 1] == trace_[1]) {
      cycle_.assign(trace_.begin(), trace_.end() - 2);
      trace_.clear();
      trace_.shrink_to_fit();
      for (size_t i = 0; i < cycle_.size(); ++i) positions_[cycle_[i]].push_back(i);
      learned_ = true;
      pos_ = 1 % cycle_.size();
    }
    return;
  }
  const size_t n = cycle_.size();
  if (cycle_[(pos_ + 1) % n] == id) {
    pos_ = (pos_ + 1) % n;
    return;
  }
  auto it = positions_.find(id);
  if (it == positions_.end()) return;
  const std::vector<size_t>& ps = it->second;
  auto after = std::upper_bound(ps.begin(), ps.end(), pos_);
  pos_ = after != ps.end() ? *after : ps.front();
}

std::vector<EntryId> AccessSchedule::Next(size_t k) const {
  std::vector<EntryId> out;
  if (!learned_) return out;
  const size_t n = cycle_.size();
  for (size_t i = 1; i <= k && i <= n; ++i) out.push_back(cycle_[(pos_ + i) % n]);
  return out;
}

}  // namespace tierlm
