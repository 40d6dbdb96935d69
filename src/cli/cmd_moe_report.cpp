// tierlm moe-report: how well expert caches would work for a routing trace (recorded by
// tierlm trace, or here from -m/-p): policy hit rates, routing consistency, and replays
// with synthetic locality. See moe/moe_report.h.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "moe/hit_rate_plot.h"
#include "moe/moe_report.h"

namespace tierlm::cli {

int MoeReportCommand(int argc, char** argv) {
  TraceOptions o;
  std::string trace_path, plot_path, seg_lengths, cache_ratios;
  bool json = false;
  ArgParser ap("moe-report");
  ap.Add({"--trace"}, &trace_path, "routing trace file (from tierlm trace); or record one with -m and -p");
  ap.Add({"--plot"}, &plot_path, "also write hit rate vs cache size per policy as an SVG file");
  ap.Add({"--seg-lengths"}, &seg_lengths,
         "window lengths m of SRP and SCH, comma-separated (default 4,16,64,256; the paper's headline: 16)");
  ap.Add({"--cache-ratios"}, &cache_ratios,
         "SCH cache sizes as c/k, cached over routed experts, comma-separated (default 1,2,4; headline: 2)");
  ap.Flag({"--json"}, &json, "print the report as one JSON object (srp, sch, sch_model, cache_hit_rate)");
  AddTraceOptions(ap, o);
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (Status c = CheckTraceOptions(o); !c.ok()) return ReportError(c);
  if (trace_path.empty() == o.model.empty())
    return ReportError(Status::InvalidArgument("moe-report: give either --trace FILE or -m MODEL (with -p PROMPT)"));
  MoeReportOptions ro;
  if (!seg_lengths.empty()) {
    auto v = ParseIntList("--seg-lengths", seg_lengths);
    if (!v.ok()) return ReportError(v.status());
    ro.segment_lengths = *v;
  }
  if (!cache_ratios.empty()) {
    auto v = ParsePositiveList("--cache-ratios", cache_ratios);
    if (!v.ok()) return ReportError(v.status());
    ro.cache_ratios = *v;
  }
  if (json && !plot_path.empty())
    return ReportError(Status::InvalidArgument("moe-report: --json and --plot cannot be combined (stdout is JSON)"));
  double gate_ahead = -1;
  auto trace = trace_path.empty() ? RecordRoutingTrace(o, &gate_ahead) : RoutingTrace::Load(trace_path);
  if (!trace.ok()) return ReportError(trace.status().WithContext("moe-report"));
  auto report = json ? MoeReportJson(*trace, ro) : MoeReport(*trace, ro);
  if (!report.ok()) return ReportError(report.status());
  std::printf("%s", report->c_str());
  if (!plot_path.empty()) {
    auto curves = ComputeHitRateCurves(*trace, 12);
    if (!curves.ok()) return ReportError(curves.status());
    const std::string title = "expert cache hit rate: " + std::to_string(trace->n_tokens()) + " tokens, " +
                              std::to_string(trace->n_layer()) + " layers, top-" + std::to_string(trace->n_used()) +
                              " of " + std::to_string(trace->n_expert());
    st = WriteHitRatePlot(plot_path, *curves, title);
    if (!st.ok()) return ReportError(st);
    std::printf("\nplot written to %s\n", plot_path.c_str());
  }
  if (gate_ahead >= 0 && !json)
    std::printf("\ngate-ahead prediction accuracy (next layer's router on this layer's input): %.1f%%\n",
                100.0 * gate_ahead);
  return 0;
}

}  // namespace tierlm::cli
