// Arena: one budget's worth of memory, mapped once up front, carved by a FirstFitAllocator.
//
// Every byte a tier holds (resident entries and buffers of reads in flight) lives in its
// arena, so the budget is a hard bound on that tier's memory: the arena is the budget.
// Mapped anonymous with MADV_HUGEPAGE (fewer TLB misses streaming GiB-sized weights);
// pages are touched only when first read into, so RSS grows to the budget, never past it.
//
// Thread safety: none; the owner (ResidencyManager) serializes calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "core/status.h"
#include "tiers/first_fit_allocator.h"

namespace tierlm {

class Arena {
 public:
  static constexpr uint64_t kGranule = 4096;  // O_DIRECT alignment; every slot starts on it

  // Maps capacity_bytes rounded down to kGranule. kResourceExhausted if mmap fails;
  // kInvalidArgument if that leaves nothing.
  static Result<std::unique_ptr<Arena>> Create(uint64_t capacity_bytes);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::optional<uint64_t> Allocate(uint64_t bytes) { return alloc_.Allocate(bytes); }
  void Free(uint64_t offset) { alloc_.Free(offset); }
  uint8_t* At(uint64_t offset) const { return base_ + offset; }

  const FirstFitAllocator& allocator() const { return alloc_; }
  uint64_t capacity() const { return alloc_.capacity(); }

 private:
  Arena(uint8_t* base, uint64_t mapped, uint64_t capacity) : base_(base), mapped_(mapped), alloc_(capacity, kGranule) {}
  uint8_t* base_;
  uint64_t mapped_;
  FirstFitAllocator alloc_;
};

}  // namespace tierlm
