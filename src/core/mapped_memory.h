// MappedMemory: an anonymous private mapping, zero-filled, advised for transparent huge
// pages. Pages are committed when first touched, so a large buffer costs resident memory
// only as it is used, and 2 MiB pages (where the kernel grants them) spare the TLB misses
// of walking GiB-sized weights or KV blocks scattered across a pool.
//
// Move-only; unmaps on destruction.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/status.h"

namespace tierlm {

class MappedMemory {
 public:
  // Maps `bytes` rounded up to 4096. `what` names the buffer in the error message
  // (kResourceExhausted when the mapping fails). no_reserve: MAP_NORESERVE (no swap
  // accounting up front; for budgets whose pages may never all be touched).
  static Result<MappedMemory> Create(uint64_t bytes, std::string_view what, bool no_reserve = false);

  MappedMemory() = default;
  MappedMemory(MappedMemory&& o) noexcept : base_(o.base_), size_(o.size_) { o.base_ = nullptr, o.size_ = 0; }
  MappedMemory& operator=(MappedMemory&& o) noexcept;
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;
  ~MappedMemory() { Unmap(); }

  uint8_t* data() const { return base_; }
  uint64_t size() const { return size_; }  // mapped bytes (a multiple of 4096)

 private:
  void Unmap();
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tierlm
