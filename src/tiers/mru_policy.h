// MruPolicy: evicts the most recently released entry first. Right for a cyclic sweep larger
// than the tier, such as the KV blocks of a long context (every decode step reads a
// sequence's blocks layer by layer, in the same order): the entry used last is the one
// needed again last, so evicting it is what an oracle would do, and the rest stays resident
// from sweep to sweep (hit rate = tier / sweep). LRU would evict exactly the entry needed
// next and miss every time.
//
// Entries in use (pinned) are out of the order until released, and entries just read in
// (prefetched for the next layer) go to the far end: the victim scan never walks past
// either, so each eviction costs O(1) however many blocks a layer pins.
#pragma once

#include <list>
#include <unordered_map>

#include "tiers/eviction_policy.h"

namespace tierlm {

class MruPolicy : public EvictionPolicy {
 public:
  const char* name() const override { return "mru"; }
  void OnInsert(EntryId id) override;
  void OnAccess(EntryId id) override;
  void OnRelease(EntryId id) override;
  void OnErase(EntryId id) override;
  void VisitVictims(const std::function<bool(EntryId)>& visit) const override;

 private:
  std::list<EntryId> order_;  // back: released most recently (the first victim); front: read in, not used yet
  // Every inserted entry: its place in order_, or order_.end() while in use.
  std::unordered_map<EntryId, std::list<EntryId>::iterator> where_;
};

}  // namespace tierlm
