#include "tiers/arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tierlm {

Result<std::unique_ptr<Arena>> Arena::Create(uint64_t capacity_bytes) {
  const uint64_t cap = capacity_bytes / kGranule * kGranule;
  if (cap == 0)
    return Status::InvalidArgument("memory budget of " + std::to_string(capacity_bytes) +
                                   " bytes is below one 4096-byte page");
  void* p = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return Status::ResourceExhausted("cannot map a " + std::to_string(cap) + "-byte arena: " + std::strerror(errno));
  ::madvise(p, cap, MADV_HUGEPAGE);
  return std::unique_ptr<Arena>(new Arena(static_cast<uint8_t*>(p), cap, cap));
}

Arena::~Arena() { ::munmap(base_, mapped_); }

}  // namespace tierlm
