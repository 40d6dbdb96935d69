#include "moe/hit_rate_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "moe/moe_report.h"

namespace tierlm {
namespace {

std::string Fmt(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

}  // namespace

Result<std::vector<HitRateCurve>> ComputeHitRateCurves(const RoutingTrace& trace, int points) {
  if (trace.n_tokens() == 0) return Status::InvalidArgument("hit-rate plot: the routing trace has no tokens");
  const int64_t lo = std::max<int64_t>(1, trace.n_used());
  const int64_t hi = static_cast<int64_t>(trace.n_expert()) * trace.n_layer();
  std::vector<int64_t> caps;
  points = std::max(points, 2);
  for (int i = 0; i < points; ++i) {
    const double f = static_cast<double>(i) / (points - 1);
    const int64_t c = static_cast<int64_t>(std::llround(std::exp(std::log(lo) + f * (std::log(hi) - std::log(lo)))));
    if (caps.empty() || c > caps.back()) caps.push_back(std::min(c, hi));
  }
  std::vector<HitRateCurve> curves;
  for (const std::string& name : ExpertPolicyNames()) {
    HitRateCurve c;
    c.policy = name;
    for (int64_t cap : caps) {
      TIERLM_ASSIGN_OR_RETURN(CacheSimResult r, SimulatePolicy(name, trace, cap));
      c.capacity.push_back(cap);
      c.hit_rate.push_back(r.hit_rate());
    }
    curves.push_back(std::move(c));
  }
  return curves;
}

std::string HitRateSvg(const std::vector<HitRateCurve>& curves, const std::string& title) {
  const double W = 640, H = 420, left = 64, right = 150, top = 40, bottom = 56;
  const double pw = W - left - right, ph = H - top - bottom;
  int64_t cmin = INT64_MAX, cmax = 1;
  for (const auto& c : curves)
    for (int64_t x : c.capacity) {
      cmin = std::min(cmin, x);
      cmax = std::max(cmax, x);
    }
  if (cmin == INT64_MAX || cmin < 1) cmin = 1;
  if (cmax <= cmin) cmax = cmin + 1;
  const double lx0 = std::log10(static_cast<double>(cmin)), lx1 = std::log10(static_cast<double>(cmax));
  auto X = [&](double c) { return left + (std::log10(c) - lx0) / (lx1 - lx0) * pw; };
  auto Y = [&](double h) { return top + (1.0 - h) * ph; };
  static const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#444444", "#d62728", "#9467bd"};

  std::string s = Fmt("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                      "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
  s += Fmt("<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
  s += Fmt("<text x=\"%.0f\" y=\"22\" font-size=\"14\">%s</text>\n", left, Escape(title).c_str());
  for (int i = 0; i <= 10; i += 2) {  // y grid: 0%, 20%, ... 100%
    const double y = Y(i / 10.0);
    s += Fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", left, y, left + pw, y);
    s += Fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n", left - 6, y + 4, i * 10);
  }
  for (double d = std::pow(10.0, std::floor(lx0)); d <= cmax * 1.0001; d *= 10)  // x grid: decades
    for (int m : {1, 2, 5}) {
      const double c = d * m;
      if (c < cmin * 0.9999 || c > cmax * 1.0001) continue;
      const double x = X(c);
      s += Fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", x, top, x, top + ph);
      s += Fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n", x, top + ph + 16, c);
    }
  s += Fmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", left, top,
           pw, ph);
  s += Fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">cache size (experts, log scale)</text>\n",
           left + pw / 2, H - 14);
  s += Fmt("<text x=\"16\" y=\"%.1f\" transform=\"rotate(-90 16 %.1f)\" text-anchor=\"middle\">hit rate</text>\n",
           top + ph / 2, top + ph / 2);
  for (size_t i = 0; i < curves.size(); ++i) {
    const auto& c = curves[i];
    const char* color = kColors[i % 6];
    std::string pts;
    for (size_t j = 0; j < c.capacity.size(); ++j)
      pts += Fmt("%.1f,%.1f ", X(static_cast<double>(c.capacity[j])), Y(c.hit_rate[j]));
    s += Fmt("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"%s\"/>\n", color,
             c.policy == "belady" ? " stroke-dasharray=\"6 4\"" : "", pts.c_str());
    for (size_t j = 0; j < c.capacity.size(); ++j)
      s += Fmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", X(static_cast<double>(c.capacity[j])),
               Y(c.hit_rate[j]), color);
    const double ly = top + 16 + 20 * static_cast<double>(i);
    s += Fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
             left + pw + 14, ly, left + pw + 40, ly, color);
    s += Fmt("<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", left + pw + 46, ly + 4, Escape(c.policy).c_str());
  }
  s += "</svg>\n";
  return s;
}

Status WriteHitRatePlot(const std::string& path, const std::vector<HitRateCurve>& curves, const std::string& title) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Status::IoError(path + ": cannot create the plot file");
    f << HitRateSvg(curves, title);
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      return Status::IoError(path + ": write failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::IoError(path + ": cannot rename the finished plot into place");
  }
  return Status::Ok();
}

}  // namespace tierlm
