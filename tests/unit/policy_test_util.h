// Test helper: the victim order an eviction policy would use now.
#pragma once

#include <vector>

#include "tiers/eviction_policy.h"

namespace tierlm::testing {

inline std::vector<EntryId> Victims(const EvictionPolicy& p) {
  std::vector<EntryId> out;
  p.VisitVictims([&](EntryId id) {
    out.push_back(id);
    return true;
  });
  return out;
}

}  // namespace tierlm::testing
