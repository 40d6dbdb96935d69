// SimulateCache: replays a routing trace against an eviction policy and a cache of a
// fixed number of experts, counting hits and misses; no bytes move, so policies can be
// compared on a trace in milliseconds.
//
// Access order: the order of a decode step, the case where expert offloading hurts: token
// by token, layer by layer, and within a layer the chosen experts in ascending id (the
// order MoeFfn acquires them). Expert (layer l, expert e) is entry l * n_expert + e; one
// entry is the expert's three matrices, so the capacity counts whole experts. Demand
// paging: a miss inserts the expert, evicting the policy's first victim when the cache is
// full; the first access to an expert is a (compulsory) miss like any other.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moe/routing_trace.h"
#include "tiers/eviction_policy.h"

namespace tierlm {

struct CacheSimResult {
  int64_t hits = 0;
  int64_t misses = 0;
  double hit_rate() const { return hits + misses > 0 ? static_cast<double>(hits) / (hits + misses) : 0.0; }
};

// The trace's accesses in decode order (see above).
std::vector<EntryId> ExpertAccesses(const RoutingTrace& trace);

// Replays `accesses` on `policy` (fresh: nothing inserted) with room for `capacity` entries.
// REQUIRES: capacity >= 1.
CacheSimResult SimulateCache(std::span<const EntryId> accesses, EvictionPolicy& policy, int64_t capacity);
CacheSimResult SimulateCache(const RoutingTrace& trace, EvictionPolicy& policy, int64_t capacity);

// Belady's MIN: on a miss, evicts the resident entry whose next use is farthest away (never
// used again first; ties: lower id). It needs the future, so it runs offline only; its hit
// count is the most any policy can reach on the same accesses and capacity (demand paging).
CacheSimResult SimulateBelady(std::span<const EntryId> accesses, int64_t capacity);
CacheSimResult SimulateBelady(const RoutingTrace& trace, int64_t capacity);

}  // namespace tierlm
