#include "moe/routing_consistency.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>
#include <utility>

namespace tierlm {
namespace {

// hist[v] += the number of (window, expert) pairs of `layer` whose expert serves v of the
// window's m tokens, over every full window of every sequence. Returns the windows.
int64_t AddWindowHistogram(const RoutingTrace& trace, int64_t m, int32_t layer, std::vector<double>& hist) {
  const int32_t E = trace.n_expert(), K = trace.n_used();
  std::vector<int64_t> count(static_cast<size_t>(E));
  std::vector<int64_t> now(static_cast<size_t>(m + 1));  // the current window's histogram
  int64_t windows = 0;
  auto add = [&](int64_t t, int64_t d) {
    for (int32_t k = 0; k < K; ++k) {
      int64_t& c = count[static_cast<size_t>(trace.expert(t, layer, k))];
      --now[static_cast<size_t>(c)];
      c += d;
      ++now[static_cast<size_t>(c)];
    }
  };
  for (const auto& [b, e] : trace.sequences()) {
    if (e - b < m) continue;
    std::fill(count.begin(), count.end(), 0);
    std::fill(now.begin(), now.end(), 0);
    now[0] = E;
    for (int64_t t = b; t < b + m; ++t) add(t, +1);
    for (int64_t s = b;; ++s) {
      for (int64_t v = 0; v <= m; ++v) hist[static_cast<size_t>(v)] += static_cast<double>(now[static_cast<size_t>(v)]);
      ++windows;
      if (s + m >= e) break;
      add(s, -1);
      add(s + m, +1);
    }
  }
  return windows;
}

}  // namespace

SrpResult SegmentRoutingBestPerformance(const RoutingTrace& trace, int64_t m, int32_t layer) {
  SrpResult r;
  if (m < 1 || trace.n_tokens() == 0) return r;
  std::vector<double> hist(static_cast<size_t>(m + 1), 0.0);
  for (int32_t l = 0; l < trace.n_layer(); ++l)
    if (layer < 0 || l == layer) r.windows = AddWindowHistogram(trace, m, l, hist);
  if (r.windows == 0) return r;
  // Suffix sums: matches(tau) = sum_{v >= tau} v hist[v], groups(tau) = sum_{v >= tau} hist[v].
  std::vector<double> matches(static_cast<size_t>(m + 2), 0.0), groups(static_cast<size_t>(m + 2), 0.0);
  for (int64_t v = m; v >= 0; --v) {
    matches[static_cast<size_t>(v)] = matches[static_cast<size_t>(v + 1)] + static_cast<double>(v) * hist[static_cast<size_t>(v)];
    groups[static_cast<size_t>(v)] = groups[static_cast<size_t>(v + 1)] + hist[static_cast<size_t>(v)];
  }
  const double actual = matches[0];
  r.actual = actual;
  r.f1 = -1;
  for (int64_t tau = 0; tau <= m; ++tau) {
    const double predicted = static_cast<double>(m) * groups[static_cast<size_t>(tau)];
    const double f1 = 2.0 * matches[static_cast<size_t>(tau)] / std::max(1.0, predicted + actual);
    if (f1 > r.f1) {
      r.f1 = f1;
      r.threshold = tau;
      r.predicted = predicted;
    }
  }
  return r;
}

int64_t SchCacheSize(const RoutingTrace& trace, double ratio, bool model_level) {
  const int64_t layers = model_level ? trace.n_layer() : 1;
  const int64_t all = static_cast<int64_t>(trace.n_expert()) * layers;
  const double size = ratio * static_cast<double>(trace.n_used()) * static_cast<double>(layers);
  if (!(size < static_cast<double>(all))) return all;  // also NaN
  return std::clamp<int64_t>(std::llround(size), 1, all);
}

int64_t SegmentCacheHits(const std::vector<std::vector<int32_t>>& accesses, int32_t n_entries, int64_t m,
                         int64_t capacity) {
  const int64_t n = static_cast<int64_t>(accesses.size());
  const size_t N = static_cast<size_t>(n_entries);
  std::vector<int64_t> future(N, 0);  // uses in tokens [t, t + m)
  std::vector<int64_t> last_use(N, 0);
  std::vector<char> seen(N, 0), cached(N, 0);
  // The cached entries ordered by (future uses, last use): the first is the victim.
  std::set<std::pair<std::pair<int64_t, int64_t>, int32_t>> cache;
  auto key = [&](int32_t x) { return std::make_pair(std::make_pair(future[static_cast<size_t>(x)], last_use[static_cast<size_t>(x)]), x); };
  for (int64_t t = 0; t < std::min(m, n); ++t)
    for (int32_t x : accesses[static_cast<size_t>(t)]) ++future[static_cast<size_t>(x)];
  int64_t distinct = 0, clock = 0, hits = 0;
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<int32_t>& token = accesses[static_cast<size_t>(t)];
    // Look-ups against the cache as it was before the token.
    for (int32_t x : token) {
      if (seen[static_cast<size_t>(x)]) {
        hits += cached[static_cast<size_t>(x)];
      } else {
        hits += distinct < capacity;  // a free slot was waiting for it
        ++distinct;
        seen[static_cast<size_t>(x)] = 1;
      }
    }
    for (int32_t x : token) {
      if (cached[static_cast<size_t>(x)]) {
        cache.erase(key(x));
      } else {
        if (static_cast<int64_t>(cache.size()) >= capacity) {
          const int32_t victim = cache.begin()->second;
          cache.erase(cache.begin());
          cached[static_cast<size_t>(victim)] = 0;
        }
        cached[static_cast<size_t>(x)] = 1;
      }
      --future[static_cast<size_t>(x)];
      last_use[static_cast<size_t>(x)] = ++clock;
      cache.insert(key(x));
    }
    if (t + m < n)
      for (int32_t x : accesses[static_cast<size_t>(t + m)]) {
        if (cached[static_cast<size_t>(x)]) cache.erase(key(x));
        ++future[static_cast<size_t>(x)];
        if (cached[static_cast<size_t>(x)]) cache.insert(key(x));
      }
  }
  return hits;
}

namespace {

// Mean over sequences of the hit rate of one cache over `layers` (all, merged, when
// layer < 0; entry = layer * n_expert + expert).
double MeanSequenceHitRate(const RoutingTrace& trace, int64_t m, int64_t capacity, int32_t layer) {
  const int32_t E = trace.n_expert(), K = trace.n_used();
  const int32_t l0 = layer < 0 ? 0 : layer, l1 = layer < 0 ? trace.n_layer() : layer + 1;
  double sum = 0;
  int64_t n_seq = 0;
  for (const auto& [b, e] : trace.sequences()) {
    // Entries renumbered densely in order of first use, so memory follows the trace, not
    // n_layer * n_expert (the cache only compares entries by use, never by id).
    std::unordered_map<int64_t, int32_t> dense;
    std::vector<std::vector<int32_t>> accesses(static_cast<size_t>(e - b));
    for (int64_t t = b; t < e; ++t) {
      std::vector<int32_t>& a = accesses[static_cast<size_t>(t - b)];
      for (int32_t l = l0; l < l1; ++l)
        for (int32_t k = 0; k < K; ++k) {
          const int64_t entry = static_cast<int64_t>(layer < 0 ? l : 0) * E + trace.expert(t, l, k);
          a.push_back(dense.try_emplace(entry, static_cast<int32_t>(dense.size())).first->second);
        }
    }
    const int64_t hits = SegmentCacheHits(accesses, static_cast<int32_t>(dense.size()), m, capacity);
    sum += static_cast<double>(hits) / static_cast<double>((e - b) * K * (l1 - l0));
    ++n_seq;
  }
  return n_seq ? sum / static_cast<double>(n_seq) : 0.0;
}

}  // namespace

double SegmentCacheHitRate(const RoutingTrace& trace, int64_t m, double ratio, int32_t layer) {
  return MeanSequenceHitRate(trace, std::max<int64_t>(1, m), SchCacheSize(trace, ratio, false), layer);
}

double LayerSegmentCacheHitRate(const RoutingTrace& trace, int64_t m, double ratio) {
  if (trace.n_layer() == 0) return 0;
  double sum = 0;
  for (int32_t l = 0; l < trace.n_layer(); ++l) sum += SegmentCacheHitRate(trace, m, ratio, l);
  return sum / trace.n_layer();
}

double ModelSegmentCacheHitRate(const RoutingTrace& trace, int64_t m, double ratio) {
  if (trace.n_layer() == 0) return 0;
  return MeanSequenceHitRate(trace, std::max<int64_t>(1, m), SchCacheSize(trace, ratio, true), -1);
}

}  // namespace tierlm
