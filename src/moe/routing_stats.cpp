#include "moe/routing_stats.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

namespace tierlm {

std::string RoutingStats::ToString() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "consecutive tokens share %.1f%% of their experts (chance %.1f%%), %.1f%% of experts used, "
                "top 10%% of experts take %.1f%% of uses",
                100 * consecutive_overlap, 100 * chance_overlap, 100 * coverage, 100 * top10_share);
  return buf;
}

RoutingStats ComputeRoutingStats(const RoutingTrace& t) {
  RoutingStats s;
  const int64_t n = t.n_tokens();
  if (n == 0 || t.n_layer() == 0) return s;
  const int32_t L = t.n_layer(), X = t.n_expert(), K = t.n_used();
  s.chance_overlap = static_cast<double>(K) / X;
  double overlap = 0, coverage = 0, top = 0;
  std::vector<int64_t> uses(static_cast<size_t>(X));
  for (int32_t l = 0; l < L; ++l) {
    std::fill(uses.begin(), uses.end(), 0);
    for (int64_t tok = 0; tok < n; ++tok)
      for (int32_t k = 0; k < K; ++k) {
        const int32_t e = t.expert(tok, l, k);
        if (e >= 0 && e < X) ++uses[static_cast<size_t>(e)];
        if (tok == 0) continue;
        for (int32_t j = 0; j < K; ++j)
          if (t.expert(tok - 1, l, j) == e) {
            overlap += 1;
            break;
          }
      }
    coverage += static_cast<double>(std::count_if(uses.begin(), uses.end(), [](int64_t u) { return u > 0; })) / X;
    std::sort(uses.begin(), uses.end(), std::greater<>());
    const size_t n_top = std::max<size_t>(1, static_cast<size_t>(X) / 10);
    int64_t top_uses = 0;
    for (size_t i = 0; i < n_top; ++i) top_uses += uses[i];
    top += static_cast<double>(top_uses) / static_cast<double>(n * K);
  }
  s.consecutive_overlap = n > 1 ? overlap / (static_cast<double>(n - 1) * K * L) : 0;
  s.coverage = coverage / L;
  s.top10_share = top / L;
  return s;
}

}  // namespace tierlm
