// EvictionPolicy: which resident entries leave first when a tier needs room.
//
// A policy only orders entries; the ResidencyManager owns the bookkeeping and skips
// candidates that cannot leave now (pinned by a live Pin, read in flight, or prefetched
// and not yet used when the request is itself a prefetch). Entries a policy reports as
// PinnedForever() are never offered. One policy per file: lru_policy.h,
// pinned_set_policy.h; LFU-decay and score-based policies implement the same interface.
//
// Thread safety: none; the manager calls every method with its lock held.
#pragma once

#include <cstdint>
#include <functional>

namespace tierlm {

using EntryId = uint32_t;

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual const char* name() const = 0;

  // `id` was given a slot (its read is starting). REQUIRES: not already inserted.
  virtual void OnInsert(EntryId id) = 0;
  // `id` was acquired. REQUIRES: inserted.
  virtual void OnAccess(EntryId id) = 0;
  // `id` left the tier (evicted or its read failed). REQUIRES: inserted.
  virtual void OnErase(EntryId id) = 0;
  // The last pin of `id` was dropped. Default: nothing.
  virtual void OnRelease(EntryId id) {}

  // True if `id` must never be evicted once resident. Default: none is.
  virtual bool PinnedForever(EntryId id) const { return false; }

  // Calls visit(id) for inserted, evictable entries, first victim first, until visit
  // returns false or the candidates run out.
  virtual void VisitVictims(const std::function<bool(EntryId)>& visit) const = 0;
};

}  // namespace tierlm
