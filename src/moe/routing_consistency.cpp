#include "moe/routing_consistency.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <vector>

namespace tierlm {
namespace {

// Calls add(layer, first_token, end_token) for each (layer, segment) of m tokens.
template <typename F>
void ForEachSegment(const RoutingTrace& trace, int64_t m, F add) {
  const int64_t n = trace.n_tokens();
  for (int32_t l = 0; l < trace.n_layer(); ++l)
    for (int64_t s = 0; s < n; s += m) add(l, s, std::min(n, s + m));
}

// Sum of the `top` largest values of v (sorts v).
template <typename T>
T SumOfLargest(std::vector<T>& v, int64_t top) {
  top = std::clamp<int64_t>(top, 0, static_cast<int64_t>(v.size()));
  std::partial_sort(v.begin(), v.begin() + top, v.end(), std::greater<T>());
  return std::accumulate(v.begin(), v.begin() + top, T{0});
}

}  // namespace

double SegmentRoutingBestPerformance(const RoutingTrace& trace, int64_t m) {
  if (m < 1) m = 1;
  double kept = 0, total = 0;
  std::vector<double> mass(static_cast<size_t>(trace.n_expert()));
  ForEachSegment(trace, m, [&](int32_t l, int64_t begin, int64_t end) {
    std::fill(mass.begin(), mass.end(), 0.0);
    for (int64_t t = begin; t < end; ++t)
      for (int32_t k = 0; k < trace.n_used(); ++k) {
        mass[static_cast<size_t>(trace.expert(t, l, k))] += trace.weight(t, l, k);
        total += trace.weight(t, l, k);
      }
    kept += SumOfLargest(mass, trace.n_used());
  });
  return total > 0 ? kept / total : 0.0;
}

double SegmentCacheBestHitRate(const RoutingTrace& trace, int64_t m, int32_t cache_per_layer) {
  if (m < 1) m = 1;
  int64_t hits = 0, total = 0;
  std::vector<int64_t> uses(static_cast<size_t>(trace.n_expert()));
  ForEachSegment(trace, m, [&](int32_t l, int64_t begin, int64_t end) {
    std::fill(uses.begin(), uses.end(), 0);
    for (int64_t t = begin; t < end; ++t)
      for (int32_t k = 0; k < trace.n_used(); ++k) uses[static_cast<size_t>(trace.expert(t, l, k))]++;
    total += (end - begin) * trace.n_used();
    hits += SumOfLargest(uses, cache_per_layer);
  });
  return total > 0 ? static_cast<double>(hits) / static_cast<double>(total) : 0.0;
}

}  // namespace tierlm
