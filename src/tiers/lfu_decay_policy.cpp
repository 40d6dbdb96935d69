#include "tiers/lfu_decay_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

namespace tierlm {

LfuDecayPolicy::LfuDecayPolicy(LfuDecayOptions options)
    : decay_per_access_(std::pow(2.0, -1.0 / std::max(options.half_life_accesses, 1e-9))),
      log_inv_decay_(std::log(2.0) / std::max(options.half_life_accesses, 1e-9)) {}

LfuDecayPolicy::Key LfuDecayPolicy::KeyOf(EntryId id, const History& h) const {
  const double key = h.heat > 0 ? std::log(h.heat) + static_cast<double>(h.stamp) * log_inv_decay_
                                : -std::numeric_limits<double>::infinity();
  return {key, h.stamp, id};
}

void LfuDecayPolicy::OnInsert(EntryId id) {
  resident_.insert(id);
  auto [it, fresh] = history_.try_emplace(id, History{0.0, now_});
  order_.insert(KeyOf(id, it->second));
}

void LfuDecayPolicy::OnAccess(EntryId id) {
  if (!resident_.count(id)) return;
  History& h = history_[id];
  order_.erase(KeyOf(id, h));
  ++now_;
  h.heat = Heat(id) + 1.0;
  h.stamp = now_;
  order_.insert(KeyOf(id, h));
}

void LfuDecayPolicy::OnErase(EntryId id) {
  if (!resident_.erase(id)) return;
  order_.erase(KeyOf(id, history_.at(id)));
}

double LfuDecayPolicy::Heat(EntryId id) const {
  auto it = history_.find(id);
  if (it == history_.end()) return 0.0;
  return it->second.heat * std::pow(decay_per_access_, static_cast<double>(now_ - it->second.stamp));
}

void LfuDecayPolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  for (const Key& k : order_)
    if (!visit(std::get<2>(k))) return;
}

}  // namespace tierlm
