// FirstFitAllocator: offsets inside a fixed-capacity region, in units of `granule` bytes.
// Pure bookkeeping (no memory is touched), so fragmentation and reuse are unit-tested on
// tiny regions. Allocate() takes the lowest-addressed free run that fits; Free() merges a
// run with its free neighbours, so the region never holds two adjacent free runs.
//
// Thread safety: none; the owner serializes calls.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace tierlm {

class FirstFitAllocator {
 public:
  // capacity is rounded down to a multiple of granule. REQUIRES: granule > 0.
  FirstFitAllocator(uint64_t capacity, uint64_t granule);

  // Offset of a run of at least `bytes` (rounded up to the granule), or nullopt if no
  // free run is large enough. bytes == 0 is refused (nullopt).
  std::optional<uint64_t> Allocate(uint64_t bytes);
  // REQUIRES: offset came from Allocate() and was not freed since.
  void Free(uint64_t offset);

  uint64_t capacity() const { return capacity_; }
  uint64_t granule() const { return granule_; }
  uint64_t allocated() const { return allocated_; }
  uint64_t peak_allocated() const { return peak_allocated_; }
  uint64_t largest_free_run() const;
  size_t free_runs() const { return free_.size(); }
  size_t live_allocations() const { return used_.size(); }
  // Size of the allocation at offset (0 if none).
  uint64_t SizeAt(uint64_t offset) const;

 private:
  uint64_t capacity_;
  uint64_t granule_;
  uint64_t allocated_ = 0;
  uint64_t peak_allocated_ = 0;
  std::map<uint64_t, uint64_t> free_;  // offset -> bytes
  std::map<uint64_t, uint64_t> used_;  // offset -> bytes
};

}  // namespace tierlm
