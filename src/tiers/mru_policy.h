// MruPolicy: evicts the most recently acquired entry first (an insert counts as a use).
// Right for a cyclic sweep larger than the tier, such as the KV blocks of a long context
// (every decode step reads a sequence's blocks layer by layer, in the same order): the
// entry just used is the one needed again last, so evicting it is what an oracle would do,
// and the rest stays resident from sweep to sweep (hit rate = tier / sweep). LRU would
// evict exactly the entry needed next and miss every time.
#pragma once

#include "tiers/lru_policy.h"

namespace tierlm {

// The recency bookkeeping is LruPolicy's; only the victim order is reversed.
class MruPolicy : public LruPolicy {
 public:
  const char* name() const override { return "mru"; }
  void VisitVictims(const std::function<bool(EntryId)>& visit) const override;
};

}  // namespace tierlm
