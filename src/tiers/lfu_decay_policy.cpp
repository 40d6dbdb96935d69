#include "tiers/lfu_decay_policy.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace tierlm {

LfuDecayPolicy::LfuDecayPolicy(LfuDecayOptions options)
    : decay_per_access_(std::pow(2.0, -1.0 / std::max(options.half_life_accesses, 1e-9))) {}

void LfuDecayPolicy::OnInsert(EntryId id) {
  resident_.insert(id);
  history_.try_emplace(id, History{0.0, now_});
}

void LfuDecayPolicy::OnAccess(EntryId id) {
  if (!resident_.count(id)) return;
  ++now_;
  History& h = history_[id];
  h.heat = Heat(id) + 1.0;
  h.stamp = now_;
}

void LfuDecayPolicy::OnErase(EntryId id) { resident_.erase(id); }

double LfuDecayPolicy::Heat(EntryId id) const {
  auto it = history_.find(id);
  if (it == history_.end()) return 0.0;
  return it->second.heat * std::pow(decay_per_access_, static_cast<double>(now_ - it->second.stamp));
}

void LfuDecayPolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  // (heat, stamp, id): all three ascending.
  std::vector<std::tuple<double, uint64_t, EntryId>> order;
  order.reserve(resident_.size());
  for (EntryId id : resident_) order.emplace_back(Heat(id), history_.at(id).stamp, id);
  std::sort(order.begin(), order.end());
  for (const auto& [heat, stamp, id] : order)
    if (!visit(id)) return;
}

}  // namespace tierlm
