#include "tiers/pinned_set_policy.h"

namespace tierlm {

void PinnedSetPolicy::OnInsert(EntryId id) {
  if (pinned_.count(id)) return;
  where_[id] = ring_.insert(ring_.end(), id);
}

void PinnedSetPolicy::OnErase(EntryId id) {
  auto it = where_.find(id);
  if (it == where_.end()) return;
  ring_.erase(it->second);
  where_.erase(it);
}

void PinnedSetPolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  for (EntryId id : ring_)
    if (!visit(id)) return;
}

}  // namespace tierlm
