// LruPolicy: evicts the least recently acquired entry (an insert counts as a use).
// Right for reuse with locality; wrong for a cyclic sweep larger than the tier, where it
// evicts exactly the entry needed next (use PinnedSetPolicy there).
#pragma once

#include <list>
#include <unordered_map>

#include "tiers/eviction_policy.h"

namespace tierlm {

class LruPolicy : public EvictionPolicy {
 public:
  const char* name() const override { return "lru"; }
  void OnInsert(EntryId id) override;
  void OnAccess(EntryId id) override;
  void OnErase(EntryId id) override;
  void VisitVictims(const std::function<bool(EntryId)>& visit) const override;

 private:
  std::list<EntryId> order_;  // front: least recently used
  std::unordered_map<EntryId, std::list<EntryId>::iterator> where_;
};

}  // namespace tierlm
