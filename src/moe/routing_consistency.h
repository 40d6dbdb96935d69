// Local routing consistency: how well a fixed set of experts serves a run of m consecutive
// tokens, the two metrics of "Not All Models Suit Expert Offloading: On Local Routing
// Consistency of Mixture-of-Expert Models" (Liang et al., arXiv 2505.16056), computed the
// way the authors' published code computes them (github.com/ljcleo/moe-lrc: SRP in
// src/30_srp_calc.py + 31_srp_refine.py, SCH in 41_sch_calc.py + 42_sch_refine.py), so
// that a model's numbers can be set beside the paper's tables.
//
// Both use which experts the router chose (top-k), not the routing weights, and look only
// at windows inside one sequence of the trace (RoutingTrace::sequences()).
//
// - SRP(m), Segment Routing best Performance: slide a window of m tokens (stride 1, full
//   windows only) over each sequence. For a window, a layer and an expert, c = the window's
//   tokens routed to that expert; a threshold tau predicts the expert for all m tokens of
//   the window when c >= tau. Over all experts, layers and windows: TP = sum of c over the
//   predicted (window, expert) pairs, predictions = m * their number, actual = all
//   activations; SRP = the F1 score 2 TP / (predictions + actual), maximised over one
//   global tau in [0, m]. The predicted group's size varies per window; it is not k.
//   1: every window routes all its tokens to one fixed set of k experts.
//
// - SCH(m, r), Segment Cache best Hit rate: an online cache of r * k experts per layer,
//   run over each sequence from empty. Before a token, its k experts are looked up (hit:
//   cached; an expert never seen in the sequence also counts as a hit while the cache has
//   had a free slot for it). Then each missed expert is loaded, evicting the cached expert
//   used least in the next m tokens (the current one included; ties: least recently used).
//   Hit rate = hits / accesses per sequence, averaged over sequences, then over layers.
//   Model-level SCH merges all layers into one space of n_layer * n_expert experts with one
//   cache of r * n_layer * k; a token then accesses n_layer * k experts, layer 0's first.
//
// The reference code adds bootstrap confidence intervals and subsamples its corpus; those
// are not computed here.
#pragma once

#include <cstdint>
#include <vector>

#include "moe/routing_trace.h"

namespace tierlm {

struct SrpResult {
  double f1 = 0;           // SRP; 0 when there is no full window
  int64_t threshold = 0;   // the tau that maximises it
  int64_t windows = 0;     // full windows over all sequences (per layer)
  double predicted = 0;    // predictions at that tau, over all layers and windows
  double actual = 0;       // activations in those windows
  bool has_windows() const { return windows > 0; }
};

// SRP(m) pooled over all layers (one global tau), or of one layer when 0 <= layer < n_layer.
// REQUIRES: m >= 1.
SrpResult SegmentRoutingBestPerformance(const RoutingTrace& trace, int64_t m, int32_t layer = -1);

// The cache size SCH uses for ratio r = c / k: round(r * k) experts per layer (times
// n_layer at model level), at least 1, at most all experts of that space.
int64_t SchCacheSize(const RoutingTrace& trace, double ratio, bool model_level);

// Layer-level SCH(m, r) of one layer. REQUIRES: m >= 1, ratio > 0, 0 <= layer < n_layer.
double SegmentCacheHitRate(const RoutingTrace& trace, int64_t m, double ratio, int32_t layer);
// Layer-level SCH(m, r): the mean of the layers' figures.
double LayerSegmentCacheHitRate(const RoutingTrace& trace, int64_t m, double ratio);
// Model-level SCH(m, r): one cache over all layers' experts.
double ModelSegmentCacheHitRate(const RoutingTrace& trace, int64_t m, double ratio);

// The cache simulation behind SCH on one sequence: accesses[t] are the experts (ids in
// [0, n_entries), distinct within a token) token t uses, in order; returns the hits.
// REQUIRES: m >= 1, capacity >= 1.
int64_t SegmentCacheHits(const std::vector<std::vector<int32_t>>& accesses, int32_t n_entries, int64_t m,
                         int64_t capacity);

}  // namespace tierlm
