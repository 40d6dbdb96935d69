// ScorePolicy: an expert-cache policy in the manner of HybriMoE's score-based caching:
// each resident entry gets a score from how often it is used, how recently, and how soon
// its layer runs again; the lowest score leaves first.
//
//   score(e) = freq_weight    * heat(e) / max heat over resident entries      (LFU-decay)
//            + recency_weight * 2^-(accesses since e was last used / recency_half_life)
//            + layer_weight   * (1 - distance(e) / n_layer)
//
// distance(e) is how many layers run before e's layer, counted from the layer about to
// run: the one after the layer of the most recent access. In a decode step that sweeps
// the layers in order, the experts of the layer just finished are needed last (distance
// n_layer - 1) and those of the next layer first (distance 0): recency alone would keep
// exactly the wrong ones (see pinned_set_policy.h), which the layer term corrects.
// Ties: least recently used first, then the lower id.
//
// The policy must know each entry's layer: `layer_of(id)` in [0, n_layer), given at
// construction (for the simulators, id = layer * n_expert + expert).
#pragma once

#include <functional>
#include <unordered_map>

#include "tiers/eviction_policy.h"
#include "tiers/lfu_decay_policy.h"

namespace tierlm {

struct ScorePolicyOptions {
  // Default 1: frequency, recency and layer proximity count alike.
  double freq_weight = 1.0;
  double recency_weight = 1.0;
  double layer_weight = 1.0;
  // Half-life of the frequency count, in accesses. Default 256 (see LfuDecayOptions).
  double freq_half_life_accesses = 256;
  // Accesses after which the recency term halves. Default 16 (a few layers of routing).
  double recency_half_life_accesses = 16;
};

class ScorePolicy : public EvictionPolicy {
 public:
  // REQUIRES: n_layer > 0; layer_of(id) in [0, n_layer) for every id this policy sees.
  ScorePolicy(int32_t n_layer, std::function<int32_t(EntryId)> layer_of, ScorePolicyOptions options = {});

  const char* name() const override { return "score"; }
  void OnInsert(EntryId id) override;
  void OnAccess(EntryId id) override;
  void OnErase(EntryId id) override;
  void VisitVictims(const std::function<bool(EntryId)>& visit) const override;

  // The score of a resident `id` now; higher stays longer.
  double Score(EntryId id) const;

 private:
  double MaxHeat() const;
  double ScoreWith(EntryId id, double max_heat) const;

  int32_t n_layer_;
  std::function<int32_t(EntryId)> layer_of_;
  ScorePolicyOptions options_;
  LfuDecayPolicy freq_;
  uint64_t now_ = 0;            // accesses so far
  int32_t next_layer_ = 0;      // the layer about to run
  std::unordered_map<EntryId, uint64_t> last_use_;  // resident entries: access clock of the last use
};

}  // namespace tierlm
