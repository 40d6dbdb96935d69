// WithLocality: a copy of a routing trace with temporal locality added, to ask how the
// cache policies would fare on a model whose routing is more consistent than this one.
//
// Token 0 is copied. For each later token and each layer, with probability p the token
// re-uses the experts (and weights) the previous token of the new trace chose at that
// layer; otherwise it keeps its own routing. p = 0 returns the trace unchanged; p = 1
// routes every token like the first. Deterministic for a given seed.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "moe/routing_trace.h"

namespace tierlm {

// REQUIRES: 0 <= p <= 1 (InvalidArgument otherwise).
Result<RoutingTrace> WithLocality(const RoutingTrace& trace, double p, uint64_t seed);

}  // namespace tierlm
