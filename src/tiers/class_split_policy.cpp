#include "tiers/class_split_policy.h"

namespace tierlm {

ClassSplitPolicy::ClassSplitPolicy(std::function<bool(EntryId)> is_expert,
                                   std::unique_ptr<EvictionPolicy> expert_policy)
    : is_expert_(std::move(is_expert)),
      experts_(std::move(expert_policy)),
      name_(std::string("pinned-set + experts: ") + experts_->name()) {}

void ClassSplitPolicy::OnInsert(EntryId id) {
  if (is_expert_(id)) experts_->OnInsert(id);
  else dense_.OnInsert(id);
}

void ClassSplitPolicy::OnAccess(EntryId id) {
  if (is_expert_(id)) experts_->OnAccess(id);
  else dense_.OnAccess(id);
}

void ClassSplitPolicy::OnErase(EntryId id) {
  if (is_expert_(id)) experts_->OnErase(id);
  else dense_.OnErase(id);
}

void ClassSplitPolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  bool go_on = true;
  dense_.VisitVictims([&](EntryId id) { return go_on = visit(id); });
  if (go_on) experts_->VisitVictims(visit);
}

}  // namespace tierlm
