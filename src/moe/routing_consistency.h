// Local routing consistency: how well a fixed set of experts serves a run of consecutive
// tokens, after "Not All Models Suit Expert Offloading: On Local Routing Consistency of
// Mixture-of-Expert Models" (Liang et al., 2025). As we read the paper's description:
//
// - Segment Routing Best Performance, SRP(m): cut the tokens into segments of m
//   consecutive tokens; for each layer and segment, let a fixed set of n_used experts
//   serve every token of the segment, chosen to keep the most routing weight; SRP is the
//   routing weight that set keeps over the weight the per-token router gave (its own top
//   n_used), pooled over all layers and segments. 1: every segment routes to one set of
//   experts; about n_used / n_expert: no consistency at all.
//
// - Segment Cache Best Hit Rate, SCH(m, c): the hit rate of a per-layer cache of c
//   experts whose content is chosen per segment of m tokens with hindsight (the c experts
//   the segment uses most), ignoring the cost of loading it. It bounds what any cache
//   policy can reach when the cache may only change every m tokens.
//
// A model with high SRP/SCH at large m suits expert offloading and caching; one with low
// values needs its experts in fast memory, or gate-ahead prefetch.
// A last segment shorter than m counts with its actual length.
#pragma once

#include <cstdint>

#include "moe/routing_trace.h"

namespace tierlm {

// REQUIRES: m >= 1. 0 for an empty trace.
double SegmentRoutingBestPerformance(const RoutingTrace& trace, int64_t m);

// REQUIRES: m >= 1, cache_per_layer >= 0. 0 for an empty trace.
double SegmentCacheBestHitRate(const RoutingTrace& trace, int64_t m, int32_t cache_per_layer);

}  // namespace tierlm
