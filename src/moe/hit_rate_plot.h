// Hit rate vs cache size, one curve per expert policy (Belady included), as an SVG file:
// the picture of whether a model suits expert offloading (tierlm moe-report --plot).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "moe/routing_trace.h"

namespace tierlm {

struct HitRateCurve {
  std::string policy;
  std::vector<int64_t> capacity;  // experts
  std::vector<double> hit_rate;   // [0, 1], one per capacity
};

// Simulates every policy of ExpertPolicyNames() at `points` cache sizes spread
// geometrically from n_used experts to all of them.
Result<std::vector<HitRateCurve>> ComputeHitRateCurves(const RoutingTrace& trace, int points = 12);

// The curves as a self-contained SVG document (x: cache size in experts, log scale; y:
// hit rate).
std::string HitRateSvg(const std::vector<HitRateCurve>& curves, const std::string& title);

// Writes HitRateSvg to path (through path.tmp and a rename). IoError naming the path.
Status WriteHitRatePlot(const std::string& path, const std::vector<HitRateCurve>& curves, const std::string& title);

}  // namespace tierlm
