#include "moe/moe_report.h"

#include <algorithm>
#include <cstdio>

#include "moe/routing_consistency.h"
#include "moe/synthetic_locality.h"
#include "tiers/policy_factory.h"

namespace tierlm {
namespace {

std::string Printf(const char* fmt, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), fmt, args...);
  return buf;
}

// The capacities (in experts) of the report's cache sizes, and their labels.
std::vector<std::pair<int64_t, std::string>> Capacities(const RoutingTrace& trace, const MoeReportOptions& o) {
  const int64_t active = static_cast<int64_t>(trace.n_used()) * trace.n_layer();
  const int64_t all = static_cast<int64_t>(trace.n_expert()) * trace.n_layer();
  std::vector<std::pair<int64_t, std::string>> out;
  for (int64_t mult : o.cache_multiples) {
    const int64_t cap = std::min(all, std::max<int64_t>(1, mult * active));
    if (std::any_of(out.begin(), out.end(), [&](const auto& c) { return c.first == cap; })) continue;
    out.push_back({cap, Printf("%lldx%s", static_cast<long long>(mult), cap == all ? " (all)" : "")});
  }
  for (const auto& [cap, label] : o.extra_capacities)
    if (cap > 0) out.push_back({std::min(all, cap), label});
  return out;
}

Status AppendPolicyTable(const RoutingTrace& trace, const MoeReportOptions& o, std::string* out) {
  *out += Printf("%-22s", "cache (experts)");
  for (const auto& name : ExpertPolicyNames()) *out += Printf(" %10s", name.c_str());
  *out += "\n";
  for (const auto& [cap, label] : Capacities(trace, o)) {
    *out += Printf("%-22s", Printf("%lld = %s", static_cast<long long>(cap), label.c_str()).c_str());
    for (const auto& name : ExpertPolicyNames()) {
      TIERLM_ASSIGN_OR_RETURN(CacheSimResult r, SimulatePolicy(name, trace, cap));
      *out += Printf(" %9.1f%%", 100.0 * r.hit_rate());
    }
    *out += "\n";
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<EvictionPolicy>> MakeExpertPolicy(const std::string& name, const RoutingTrace& trace) {
  const int32_t n_expert = trace.n_expert();
  return MakeEvictionPolicy(name, trace.n_layer(),
                            [n_expert](EntryId id) { return static_cast<int32_t>(id / n_expert); });
}

Result<CacheSimResult> SimulatePolicy(const std::string& policy, const RoutingTrace& trace, int64_t capacity) {
  if (policy == "belady") return SimulateBelady(trace, capacity);
  TIERLM_ASSIGN_OR_RETURN(std::unique_ptr<EvictionPolicy> p, MakeExpertPolicy(policy, trace));
  return SimulateCache(trace, *p, capacity);
}

Result<std::string> MoeReport(const RoutingTrace& trace, const MoeReportOptions& o) {
  if (trace.n_tokens() == 0) return Status::InvalidArgument("moe-report: the routing trace has no tokens");
  std::string out;
  out += Printf("trace: %lld tokens, %d layers, %d experts, %d used per token (%lld expert accesses)\n\n",
                static_cast<long long>(trace.n_tokens()), trace.n_layer(), trace.n_expert(), trace.n_used(),
                static_cast<long long>(trace.n_tokens() * trace.n_layer() * trace.n_used()));
  out += "expert cache hit rate, decode order (cache sizes: multiples of the experts one token uses)\n";
  TIERLM_RETURN_IF_ERROR(AppendPolicyTable(trace, o, &out));

  out += "\nlocal routing consistency (Liang et al. 2025): SRP(m) = routing weight the best fixed\n"
         "set of n_used experts per m-token segment keeps; SCH(m, c) = hit rate of the best\n"
         "per-segment cache of c experts per layer\n";
  out += Printf("%-8s %8s", "m", "SRP");
  const std::vector<int32_t> cache_sizes = {trace.n_used(), std::min(2 * trace.n_used(), trace.n_expert())};
  for (int32_t c : cache_sizes) out += Printf(" %11s", Printf("SCH(c=%d)", c).c_str());
  out += "\n";
  for (int64_t m : o.segment_lengths) {
    out += Printf("%-8lld %7.1f%%", static_cast<long long>(m), 100.0 * SegmentRoutingBestPerformance(trace, m));
    for (int32_t c : cache_sizes) out += Printf(" %10.1f%%", 100.0 * SegmentCacheBestHitRate(trace, m, c));
    out += "\n";
  }

  for (double p : o.locality) {
    TIERLM_ASSIGN_OR_RETURN(RoutingTrace synth, WithLocality(trace, p, o.seed));
    out += Printf("\nsynthetic locality p = %.2f (each token re-uses the previous token's experts with "
                  "probability p)\n", p);
    TIERLM_RETURN_IF_ERROR(AppendPolicyTable(synth, o, &out));
  }
  return out;
}

}  // namespace tierlm
