// ResidencyStats: what a ResidencyManager did, per entry class; printed by bench and plan.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "tiers/entry.h"

namespace tierlm {

struct ClassStats {
  uint64_t acquires = 0;
  uint64_t hits = 0;          // resident when acquired (including finished prefetches)
  uint64_t misses = 0;        // not resident: absent or still being read
  uint64_t stalls = 0;        // acquires that had to wait for a read
  int64_t stall_nanos = 0;    // time those waits took (on the manager's clock)
  uint64_t reads = 0;         // completed reads
  uint64_t bytes_read = 0;
  uint64_t evictions = 0;
  uint64_t prefetches = 0;         // reads started by Prefetch
  uint64_t prefetches_used = 0;    // of those, acquired before eviction
  uint64_t prefetches_wasted = 0;  // of those, evicted unused
  uint64_t io_errors = 0;
  // Writable entries (KV blocks): write-backs of dirty entries before their slot is
  // reused, the bytes they wrote, the ones that failed (the entry's bytes are then lost),
  // and entries discarded (their contents no longer needed: no write-back).
  uint64_t writes = 0;
  uint64_t bytes_written = 0;
  uint64_t write_errors = 0;
  uint64_t discards = 0;
  // For the share of miss latency prefetching hides: acquires a finished prefetch served
  // (hits that would have been misses), and acquires that found the entry absent and read
  // it themselves, with the time they waited (the cost of an unhidden miss).
  uint64_t prefetch_hits = 0;
  uint64_t demand_misses = 0;
  int64_t demand_miss_nanos = 0;
  // 1 - (time waited) / (would-be misses x mean unhidden miss time); 0 without data.
  double HiddenMissShare() const;

  ClassStats& operator+=(const ClassStats& o);
  // The counts since an earlier snapshot `o` of the same stats.
  ClassStats& operator-=(const ClassStats& o);
};

struct ResidencyStats {
  std::array<ClassStats, kNumEntryClasses> per_class{};
  uint64_t capacity_bytes = 0;        // the budget (arena size)
  uint64_t allocated_bytes = 0;       // slots in use: resident + reads in flight
  uint64_t peak_allocated_bytes = 0;  // never above capacity_bytes
  uint64_t resident_bytes = 0;
  uint64_t in_flight_bytes = 0;
  uint64_t pinned_bytes = 0;          // held by live Pins
  uint64_t pinned_forever_bytes = 0;  // resident entries the policy never evicts

  ClassStats Total() const;
  std::string ToString() const;  // one line per class with activity
};

}  // namespace tierlm
