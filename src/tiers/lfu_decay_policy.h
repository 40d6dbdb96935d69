// LfuDecayPolicy: evicts the entry with the lowest access frequency, where every access
// counts 1 and old accesses fade with a half-life counted in accesses (to any entry).
//
// Heat of entry e at time now: sum over its accesses at times t of 2^-((now - t) / half_life).
// Each access advances `now` by one. Victims go in ascending heat; ties: least recently
// accessed first, then the lower id. Frequencies survive eviction (an expert that was hot
// and left comes back with its history); that costs 16 bytes per entry ever seen.
//
// Right for skewed, slowly drifting reuse such as MoE expert popularity; a new entry with
// little history is the first victim, so a burst of one-off entries cannot flush the tier.
#pragma once

#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "tiers/eviction_policy.h"

namespace tierlm {

struct LfuDecayOptions {
  // Accesses after which an access counts half. Default 256 (for experts: a few tokens'
  // worth of routing in a 32-layer model with 8 active experts). Larger: plain LFU;
  // smaller: close to LRU.
  double half_life_accesses = 256;
};

class LfuDecayPolicy : public EvictionPolicy {
 public:
  explicit LfuDecayPolicy(LfuDecayOptions options = {});

  const char* name() const override { return "lfu-decay"; }
  void OnInsert(EntryId id) override;
  void OnAccess(EntryId id) override;
  void OnErase(EntryId id) override;
  void VisitVictims(const std::function<bool(EntryId)>& visit) const override;

  // Heat of `id` now (0 for an entry never accessed).
  double Heat(EntryId id) const;

 private:
  struct History {
    double heat = 0;    // at time `stamp`
    uint64_t stamp = 0;  // access clock when heat was last brought up to date
  };
  // Heats all decay by the same factor per access, so their order never changes between
  // accesses: heat(now) = heat * d^(now - stamp) ranks like log(heat) + stamp * ln(1/d).
  // Resident entries are kept sorted by that key (then stamp, then id): an eviction costs
  // O(log n), not a sort of every resident entry.
  using Key = std::tuple<double, uint64_t, EntryId>;
  Key KeyOf(EntryId id, const History& h) const;
  double decay_per_access_;  // 2^(-1 / half_life)
  double log_inv_decay_;     // ln(1 / decay_per_access_)
  uint64_t now_ = 0;         // accesses so far
  std::unordered_map<EntryId, History> history_;
  std::set<Key> order_;      // resident entries, first victim first
  std::unordered_set<EntryId> resident_;
};

}  // namespace tierlm
