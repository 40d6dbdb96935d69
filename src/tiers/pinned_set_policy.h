// PinnedSetPolicy: a fixed set of entries stays resident forever; every other entry
// streams through the rest of the tier as a ring, evicted in the order it came in.
//
// For a cyclic sweep (a dense forward pass touches every weight once per token, in the
// same order) this is the optimal policy among those that do not know the future beyond
// the cycle: every pinned byte is a hit on every pass, while LRU on a sweep larger than
// the tier hits nothing. The ring evicts the oldest arrival, which in a sweep is the
// entry used longest ago; prefetched entries not yet used are protected by the manager.
#pragma once

#include <list>
#include <unordered_map>
#include <unordered_set>

#include "tiers/eviction_policy.h"

namespace tierlm {

class PinnedSetPolicy : public EvictionPolicy {
 public:
  PinnedSetPolicy() = default;
  explicit PinnedSetPolicy(std::unordered_set<EntryId> pinned) : pinned_(std::move(pinned)) {}

  // Adds `id` to the pinned set. REQUIRES: `id` is not inserted in the ring.
  void Pin(EntryId id) { pinned_.insert(id); }
  const std::unordered_set<EntryId>& pinned() const { return pinned_; }

  const char* name() const override { return "pinned-set"; }
  void OnInsert(EntryId id) override;
  void OnAccess(EntryId id) override {}
  void OnErase(EntryId id) override;
  bool PinnedForever(EntryId id) const override { return pinned_.count(id) != 0; }
  void VisitVictims(const std::function<bool(EntryId)>& visit) const override;

 private:
  std::unordered_set<EntryId> pinned_;
  std::list<EntryId> ring_;  // front: oldest arrival
  std::unordered_map<EntryId, std::list<EntryId>::iterator> where_;
};

}  // namespace tierlm
