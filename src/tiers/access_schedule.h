// AccessSchedule: learns the order in which a forward pass acquires entries and predicts
// the next ones. A dense decoder touches the same weights in the same order every token,
// so the first pass, recorded, is the schedule for every later one.
//
// Learning ends when the first two accesses recur in order (the next pass has begun);
// the cycle is everything before. Afterwards each access moves a cursor to its next
// occurrence in the cycle (a pass that skips the output head, or a different expert,
// re-synchronizes at the next known entry). Entries not in the cycle leave it unmoved.
//
// Thread safety: none; the owner serializes calls.
#pragma once

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "tiers/eviction_policy.h"

namespace tierlm {

class AccessSchedule {
 public:
  // Longest trace kept while learning; past it, learning gives up (no prediction).
  static constexpr size_t kMaxTrace = 1 << 20;

  void Record(EntryId id);
  bool learned() const { return learned_; }
  const std::vector<EntryId>& cycle() const { return cycle_; }
  // Up to k entries expected after the last recorded access, wrapping around the cycle.
  // Empty until learned.
  std::vector<EntryId> Next(size_t k) const;

 private:
  std::vector<EntryId> trace_;
  bool learned_ = false;
  std::vector<EntryId> cycle_;
  std::unordered_map<EntryId, std::vector<size_t>> positions_;  // sorted positions in cycle_
  size_t pos_ = 0;  // cycle index of the last access
};

}  // namespace tierlm
