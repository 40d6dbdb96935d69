// ClassSplitPolicy: one tier, two kinds of traffic. Dense weights follow PinnedSetPolicy
// (a pinned set plus a ring for the streamed rest: right for the every-token sweep), and
// MoE experts follow a policy of their own (LRU, LFU-decay, score: right for routed,
// skewed reuse). The experts' share of the tier is simply what the pinned set leaves:
// the expert cache.
//
// Victims: streamed dense weights first (oldest arrival first; each is needed again only
// a whole token later, and it is cheap to re-read in sweep order), then experts in the
// expert policy's order. Entries of the pinned set are never offered.
//
// Thread safety: none (the manager calls it under its lock).
#pragma once

#include <functional>
#include <memory>

#include "tiers/eviction_policy.h"
#include "tiers/pinned_set_policy.h"

namespace tierlm {

class ClassSplitPolicy : public EvictionPolicy {
 public:
  // is_expert(id) says which policy an entry belongs to; it must not change for an id.
  // REQUIRES: expert_policy non-null.
  ClassSplitPolicy(std::function<bool(EntryId)> is_expert, std::unique_ptr<EvictionPolicy> expert_policy);

  // Adds a dense entry to the pinned set. REQUIRES: not inserted yet.
  void Pin(EntryId id) { dense_.Pin(id); }
  const EvictionPolicy& expert_policy() const { return *experts_; }

  const char* name() const override { return name_.c_str(); }
  void OnInsert(EntryId id) override;
  void OnAccess(EntryId id) override;
  void OnErase(EntryId id) override;
  bool PinnedForever(EntryId id) const override { return dense_.PinnedForever(id); }
  void VisitVictims(const std::function<bool(EntryId)>& visit) const override;

 private:
  std::function<bool(EntryId)> is_expert_;
  PinnedSetPolicy dense_;
  std::unique_ptr<EvictionPolicy> experts_;
  std::string name_;
};

}  // namespace tierlm
