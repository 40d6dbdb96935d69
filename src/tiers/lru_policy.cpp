#include "tiers/lru_policy.h"

namespace tierlm {

void LruPolicy::OnInsert(EntryId id) { where_[id] = order_.insert(order_.end(), id); }

void LruPolicy::OnAccess(EntryId id) {
  auto it = where_.find(id);
  if (it == where_.end()) return;
  order_.splice(order_.end(), order_, it->second);
}

void LruPolicy::OnErase(EntryId id) {
  auto it = where_.find(id);
  if (it == where_.end()) return;
  order_.erase(it->second);
  where_.erase(it);
}

void LruPolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  for (EntryId id : order_)
    if (!visit(id)) return;
}

}  // namespace tierlm
