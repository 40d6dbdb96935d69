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
#include <utility>

#include "core/mapped_memory.h"
#include "core/status.h"
#include "tiers/first_fit_allocator.h"

namespace tierlm {

class Arena {
 public:
  static constexpr uint64_t kGranule = 4096;  // O_DIRECT alignment; every slot starts on it

  // Maps capacity_bytes rounded down to kGranule. kResourceExhausted if mmap fails;
  // kInvalidArgument if that leaves nothing.
  static Result<std::unique_ptr<Arena>> Create(uint64_t capacity_bytes);
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::optional<uint64_t> Allocate(uint64_t bytes) { return alloc_.Allocate(bytes); }
  void Free(uint64_t offset) { alloc_.Free(offset); }
  uint8_t* At(uint64_t offset) const { return base_ + offset; }

  const FirstFitAllocator& allocator() const { return alloc_; }
  uint64_t capacity() const { return alloc_.capacity(); }

 private:
  Arena(MappedMemory mem, uint64_t capacity) : mem_(std::move(mem)), base_(mem_.data()), alloc_(capacity, kGranule) {}
  MappedMemory mem_;
  uint8_t* base_;
  FirstFitAllocator alloc_;
};

}  // namespace tierlm
