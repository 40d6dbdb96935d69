#include "tiers/mru_policy.h"

namespace tierlm {

void MruPolicy::OnInsert(EntryId id) { where_[id] = order_.insert(order_.begin(), id); }

void MruPolicy::OnAccess(EntryId id) {
  auto it = where_.find(id);
  if (it == where_.end() || it->second == order_.end()) return;
  order_.erase(it->second);
  it->second = order_.end();
}

void MruPolicy::OnRelease(EntryId id) {
  auto it = where_.find(id);
  if (it == where_.end()) return;
  if (it->second != order_.end()) order_.erase(it->second);
  it->second = order_.insert(order_.end(), id);
}

void MruPolicy::OnErase(EntryId id) {
  auto it = where_.find(id);
  if (it == where_.end()) return;
  if (it->second != order_.end()) order_.erase(it->second);
  where_.erase(it);
}

void MruPolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  for (auto it = order_.rbegin(); it != order_.rend(); ++it)
    if (!visit(*it)) return;
}

}  // namespace tierlm
