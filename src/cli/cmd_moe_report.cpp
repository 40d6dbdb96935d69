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
  std::string trace_path, plot_path;
  ArgParser ap("moe-report");
  ap.Add({"--trace"}, &trace_path, "routing trace file (from tierlm trace); or record one with -m and -p");
  ap.Add({"--plot"}, &plot_path, "also write hit rate vs cache size per policy as an SVG file");
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
  double gate_ahead = -1;
  auto trace = trace_path.empty() ? RecordRoutingTrace(o, &gate_ahead) : RoutingTrace::Load(trace_path);
  if (!trace.ok()) return ReportError(trace.status().WithContext("moe-report"));
  auto report = MoeReport(*trace, MoeReportOptions{});
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
  if (gate_ahead >= 0)
    std::printf("\ngate-ahead prediction accuracy (next layer's router on this layer's input): %.1f%%\n",
                100.0 * gate_ahead);
  return 0;
}

}  // namespace tierlm::cli
