#include "moe/moe_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

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

Status CheckOptions(const RoutingTrace& trace, const MoeReportOptions& o) {
  if (trace.n_tokens() == 0) return Status::InvalidArgument("moe-report: the routing trace has no tokens");
  for (int64_t m : o.segment_lengths)
    if (m < 1 || m > (int64_t{1} << 20))
      return Status::InvalidArgument("moe-report: segment length " + std::to_string(m) + " is outside [1, 1048576]");
  for (double r : o.cache_ratios)
    if (!(r > 0) || !std::isfinite(r))
      return Status::InvalidArgument("moe-report: cache ratio " + Printf("%g", r) + " is not positive");
  return Status::Ok();
}

// "2", "0.5": how a cache ratio names its column and JSON key.
std::string RatioName(double r) { return Printf("%g", r); }

struct Consistency {
  std::vector<SrpResult> srp;                      // [m]
  std::vector<std::vector<SrpResult>> srp_layers;  // [m][layer]
  std::vector<std::vector<double>> sch, sch_model; // [m][ratio]
};

Consistency ComputeConsistency(const RoutingTrace& trace, const MoeReportOptions& o) {
  Consistency c;
  for (int64_t m : o.segment_lengths) {
    c.srp.push_back(SegmentRoutingBestPerformance(trace, m));
    c.srp_layers.emplace_back();
    for (int32_t l = 0; l < trace.n_layer(); ++l) c.srp_layers.back().push_back(SegmentRoutingBestPerformance(trace, m, l));
    c.sch.emplace_back();
    c.sch_model.emplace_back();
    for (double r : o.cache_ratios) {
      c.sch.back().push_back(LayerSegmentCacheHitRate(trace, m, r));
      c.sch_model.back().push_back(ModelSegmentCacheHitRate(trace, m, r));
    }
  }
  return c;
}

void AppendConsistency(const RoutingTrace& trace, const MoeReportOptions& o, std::string* out) {
  const Consistency c = ComputeConsistency(trace, o);
  *out += "\nlocal routing consistency (Liang et al., arXiv 2505.16056, as the authors' code computes it)\n"
          "over " + std::to_string(trace.sequences().size()) +
          " sequence(s): SRP(m) = best F1 of predicting, per window of m tokens, every expert\n"
          "used >= tau times in it for all m tokens; SCH(m, c/k) = hit rate of an online cache of\n"
          "c experts keeping those used most in the next m tokens (per layer; model: one cache of\n"
          "c * n_layer over all layers)\n";
  *out += Printf("%-6s %7s %4s", "m", "SRP", "tau");
  for (double r : o.cache_ratios) *out += Printf(" %10s", ("SCH(" + RatioName(r) + "k)").c_str());
  for (double r : o.cache_ratios) *out += Printf(" %12s", ("model(" + RatioName(r) + "k)").c_str());
  *out += "\n";
  for (size_t i = 0; i < o.segment_lengths.size(); ++i) {
    const SrpResult& s = c.srp[i];
    if (s.has_windows())
      *out += Printf("%-6lld %6.1f%% %4lld", static_cast<long long>(o.segment_lengths[i]), 100.0 * s.f1,
                     static_cast<long long>(s.threshold));
    else
      *out += Printf("%-6lld %7s %4s", static_cast<long long>(o.segment_lengths[i]), "n/a", "");
    for (double v : c.sch[i]) *out += Printf(" %9.1f%%", 100.0 * v);
    for (double v : c.sch_model[i]) *out += Printf(" %11.1f%%", 100.0 * v);
    *out += "\n";
  }
  bool any_na = false;
  for (const SrpResult& s : c.srp) any_na |= !s.has_windows();
  if (any_na) *out += "n/a: every sequence is shorter than m (SRP counts full windows only)\n";
  // Per layer at the paper's headline m = 16 when asked for, else at the first m.
  const auto it = std::find(o.segment_lengths.begin(), o.segment_lengths.end(), 16);
  const size_t at = it == o.segment_lengths.end() ? 0 : static_cast<size_t>(it - o.segment_lengths.begin());
  *out += Printf("SRP per layer (m = %lld):", static_cast<long long>(o.segment_lengths[at]));
  for (const SrpResult& s : c.srp_layers[at])
    *out += s.has_windows() ? Printf(" %.1f%%", 100.0 * s.f1) : std::string(" n/a");
  *out += "\n";
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
  TIERLM_RETURN_IF_ERROR(CheckOptions(trace, o));
  std::string out;
  out += Printf("trace: %lld tokens in %zu sequence(s), %d layers, %d experts, %d used per token (%lld expert "
                "accesses)\n\n",
                static_cast<long long>(trace.n_tokens()), trace.sequences().size(), trace.n_layer(), trace.n_expert(),
                trace.n_used(), static_cast<long long>(trace.n_tokens() * trace.n_layer() * trace.n_used()));
  out += "expert cache hit rate, decode order (cache sizes: multiples of the experts one token uses)\n";
  TIERLM_RETURN_IF_ERROR(AppendPolicyTable(trace, o, &out));

  if (!o.segment_lengths.empty()) AppendConsistency(trace, o, &out);

  for (double p : o.locality) {
    TIERLM_ASSIGN_OR_RETURN(RoutingTrace synth, WithLocality(trace, p, o.seed));
    out += Printf("\nsynthetic locality p = %.2f (each token re-uses the previous token's experts with "
                  "probability p)\n", p);
    TIERLM_RETURN_IF_ERROR(AppendPolicyTable(synth, o, &out));
  }
  return out;
}

Result<std::string> MoeReportJson(const RoutingTrace& trace, const MoeReportOptions& o) {
  TIERLM_RETURN_IF_ERROR(CheckOptions(trace, o));
  using json = nlohmann::ordered_json;  // keys in the order written
  json j;
  j["trace"] = {{"tokens", trace.n_tokens()},
                {"sequences", trace.sequences().size()},
                {"layers", trace.n_layer()},
                {"experts", trace.n_expert()},
                {"used", trace.n_used()}};
  const Consistency c = ComputeConsistency(trace, o);
  json srp = json::object(), tau = json::object(), layers = json::object(), sch = json::object(),
       sch_model = json::object();
  for (size_t i = 0; i < o.segment_lengths.size(); ++i) {
    const std::string m = std::to_string(o.segment_lengths[i]);
    srp[m] = c.srp[i].has_windows() ? json(c.srp[i].f1) : json(nullptr);
    tau[m] = c.srp[i].has_windows() ? json(c.srp[i].threshold) : json(nullptr);
    layers[m] = json::array();
    for (const SrpResult& s : c.srp_layers[i]) layers[m].push_back(s.has_windows() ? json(s.f1) : json(nullptr));
    sch[m] = json::object();
    sch_model[m] = json::object();
    for (size_t r = 0; r < o.cache_ratios.size(); ++r) {
      sch[m][RatioName(o.cache_ratios[r])] = c.sch[i][r];
      sch_model[m][RatioName(o.cache_ratios[r])] = c.sch_model[i][r];
    }
  }
  j["srp"] = srp;
  j["srp_threshold"] = tau;
  j["srp_layers"] = layers;
  j["sch"] = sch;
  j["sch_model"] = sch_model;
  json hit = json::object();
  for (const auto& [cap, label] : Capacities(trace, o)) {
    json row = json::object();
    for (const auto& name : ExpertPolicyNames()) {
      TIERLM_ASSIGN_OR_RETURN(CacheSimResult r, SimulatePolicy(name, trace, cap));
      row[name] = r.hit_rate();
    }
    hit[std::to_string(cap)] = row;
  }
  j["cache_hit_rate"] = hit;
  return j.dump(2) + "\n";
}

}  // namespace tierlm
