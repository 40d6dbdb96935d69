#include "tiers/mru_policy.h"

namespace tierlm {

void MruPolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  for (auto it = order_.rbegin(); it != order_.rend(); ++it)
    if (!visit(*it)) return;
}

}  // namespace tierlm
