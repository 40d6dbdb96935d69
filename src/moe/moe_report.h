// The expert-cache report for one routing trace (tierlm moe-report): hit rates of each
// cache policy at several cache sizes, the local routing-consistency metrics, and the same
// comparison on copies of the trace with added temporal locality.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "moe/cache_simulator.h"
#include "moe/routing_trace.h"
#include "tiers/eviction_policy.h"

namespace tierlm {

// The policies the report compares, in its column order. "belady" is offline (no policy
// object; see SimulateBelady).
inline const std::vector<std::string>& ExpertPolicyNames() {
  static const std::vector<std::string> names = {"lru", "lfu-decay", "score", "belady"};
  return names;
}

// A fresh online policy for experts of `trace`'s shape (entry id = layer * n_expert +
// expert): "lru", "lfu-decay" or "score". NotFound for another name (and for "belady").
Result<std::unique_ptr<EvictionPolicy>> MakeExpertPolicy(const std::string& name, const RoutingTrace& trace);

// Simulates `policy` ("belady" included) on `trace` with room for `capacity` experts.
Result<CacheSimResult> SimulatePolicy(const std::string& policy, const RoutingTrace& trace, int64_t capacity);

struct MoeReportOptions {
  // Cache sizes as multiples of the experts one token activates (n_used * n_layer),
  // capped at all experts. Default 1x, 2x, 4x.
  std::vector<int64_t> cache_multiples = {1, 2, 4};
  // Further cache sizes in experts, each with its label (e.g. the live cache of a run).
  std::vector<std::pair<int64_t, std::string>> extra_capacities;
  // Segment lengths m for SRP and SCH. Default 4, 16, 64, 256 (the paper's; its headline
  // figures use 16).
  std::vector<int64_t> segment_lengths = {4, 16, 64, 256};
  // SCH cache sizes as ratios c / k of cached to routed experts. Default 1, 2, 4 (the
  // paper's headline: 2).
  std::vector<double> cache_ratios = {1, 2, 4};
  // Probabilities of re-using the previous token's experts for the synthetic replays.
  // Default 0, 0.5, 0.9.
  std::vector<double> locality = {0.0, 0.5, 0.9};
  // Seed of the synthetic replays. Default 1.
  uint64_t seed = 1;
};

// The report as printable text. InvalidArgument for an empty trace, a segment length
// below 1 or a cache ratio that is not positive.
Result<std::string> MoeReport(const RoutingTrace& trace, const MoeReportOptions& options);

// The same figures as one JSON object (moe-report --json):
//   "trace": {"tokens", "sequences", "layers", "experts", "used"},
//   "srp": {"<m>": F1}, "srp_threshold": {"<m>": tau}, "srp_layers": {"<m>": [per layer]},
//   "sch": {"<m>": {"<c/k>": rate}}, "sch_model": {"<m>": {"<c/k>": rate}},
//   "cache_hit_rate": {"<experts>": {"<policy>": rate}} (the policy table, decode order).
// SRP is null for an m longer than every sequence (no full window). Same errors as MoeReport.
Result<std::string> MoeReportJson(const RoutingTrace& trace, const MoeReportOptions& options);

}  // namespace tierlm
