// RoutingStats: how a routing trace spreads over the experts, printed next to every MoE
// speed number (a cache looks perfect on repetitive routing, so the numbers must say
// how repetitive it was).
#pragma once

#include <string>

#include "moe/routing_trace.h"

namespace tierlm {

struct RoutingStats {
  // Mean share of a token's experts (per layer) that the previous token also used; chance
  // level for uniform, independent routing is n_used / n_expert.
  double consecutive_overlap = 0;
  double chance_overlap = 0;
  // Mean share of a layer's experts used at least once in the trace.
  double coverage = 0;
  // Mean share of a layer's expert uses that go to its most used 10% of experts
  // (at least one expert); uniform routing gives about 10%.
  double top10_share = 0;
  std::string ToString() const;
};

// Zeros for a trace without tokens.
RoutingStats ComputeRoutingStats(const RoutingTrace& trace);

}  // namespace tierlm
