#include "tiers/residency_stats.h"

#include <cstdio>

#include "tiers/admit.h"

namespace tierlm {

const char* EntryClassName(EntryClass c) { return io::IoClassName(static_cast<io::IoClass>(c)); }

const char* AdmitName(Admit a) {
  switch (a) {
    case Admit::kOk: return "ok";
    case Admit::kLater: return "later";
    case Admit::kImpossible: return "impossible";
  }
  return "?";
}

ClassStats& ClassStats::operator+=(const ClassStats& o) {
  acquires += o.acquires;
  hits += o.hits;
  misses += o.misses;
  stalls += o.stalls;
  stall_nanos += o.stall_nanos;
  reads += o.reads;
  bytes_read += o.bytes_read;
  evictions += o.evictions;
  prefetches += o.prefetches;
  prefetches_used += o.prefetches_used;
  prefetches_wasted += o.prefetches_wasted;
  io_errors += o.io_errors;
  writes += o.writes;
  bytes_written += o.bytes_written;
  write_errors += o.write_errors;
  discards += o.discards;
  prefetch_hits += o.prefetch_hits;
  demand_misses += o.demand_misses;
  demand_miss_nanos += o.demand_miss_nanos;
  return *this;
}

ClassStats& ClassStats::operator-=(const ClassStats& o) {
  acquires -= o.acquires;
  hits -= o.hits;
  misses -= o.misses;
  stalls -= o.stalls;
  stall_nanos -= o.stall_nanos;
  reads -= o.reads;
  bytes_read -= o.bytes_read;
  evictions -= o.evictions;
  prefetches -= o.prefetches;
  prefetches_used -= o.prefetches_used;
  prefetches_wasted -= o.prefetches_wasted;
  io_errors -= o.io_errors;
  writes -= o.writes;
  bytes_written -= o.bytes_written;
  write_errors -= o.write_errors;
  discards -= o.discards;
  prefetch_hits -= o.prefetch_hits;
  demand_misses -= o.demand_misses;
  demand_miss_nanos -= o.demand_miss_nanos;
  return *this;
}

double ClassStats::HiddenMissShare() const {
  if (demand_misses == 0 || demand_miss_nanos <= 0) return 0;
  const double unhidden = static_cast<double>(demand_miss_nanos) / static_cast<double>(demand_misses);
  const double would_be = static_cast<double>(misses + prefetch_hits) * unhidden;
  if (would_be <= 0) return 0;
  const double share = 1.0 - static_cast<double>(stall_nanos) / would_be;
  return share < 0 ? 0 : share;
}

ClassStats ResidencyStats::Total() const {
  ClassStats t;
  for (const ClassStats& c : per_class) t += c;
  return t;
}

std::string ResidencyStats::ToString() const {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "budget %llu B, allocated %llu B (peak %llu), resident %llu B, in flight %llu B, pinned %llu B, "
                "pinned for good %llu B\n",
                (unsigned long long)capacity_bytes, (unsigned long long)allocated_bytes,
                (unsigned long long)peak_allocated_bytes, (unsigned long long)resident_bytes,
                (unsigned long long)in_flight_bytes, (unsigned long long)pinned_bytes,
                (unsigned long long)pinned_forever_bytes);
  out += line;
  for (int c = 0; c < kNumEntryClasses; ++c) {
    const ClassStats& s = per_class[static_cast<size_t>(c)];
    if (!s.acquires && !s.reads && !s.prefetches && !s.writes) continue;
    std::snprintf(line, sizeof line,
                  "  %-6s acquires %llu, hits %llu, misses %llu, stalls %llu (%.3f ms), reads %llu (%llu B), "
                  "evictions %llu, prefetches %llu (used %llu, wasted %llu), io errors %llu\n",
                  EntryClassName(static_cast<EntryClass>(c)), (unsigned long long)s.acquires,
                  (unsigned long long)s.hits, (unsigned long long)s.misses, (unsigned long long)s.stalls,
                  s.stall_nanos / 1e6, (unsigned long long)s.reads, (unsigned long long)s.bytes_read,
                  (unsigned long long)s.evictions, (unsigned long long)s.prefetches,
                  (unsigned long long)s.prefetches_used, (unsigned long long)s.prefetches_wasted,
                  (unsigned long long)s.io_errors);
    out += line;
    if (s.writes || s.discards) {
      out.pop_back();
      std::snprintf(line, sizeof line, ", writes %llu (%llu B), write errors %llu, discards %llu\n",
                    (unsigned long long)s.writes, (unsigned long long)s.bytes_written,
                    (unsigned long long)s.write_errors, (unsigned long long)s.discards);
      out += line;
    }
  }
  return out;
}

}  // namespace tierlm
