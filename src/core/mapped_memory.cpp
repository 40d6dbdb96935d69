#include "core/mapped_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tierlm {

Result<MappedMemory> MappedMemory::Create(uint64_t bytes, std::string_view what, bool no_reserve) {
  const uint64_t len = (bytes + 4095) & ~uint64_t{4095};
  if (len == 0) return MappedMemory();
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | (no_reserve ? MAP_NORESERVE : 0);
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED)
    return Status::ResourceExhausted("cannot map " + std::to_string(len) + " bytes for " + std::string(what) + ": " +
                                     std::strerror(errno));
  ::madvise(p, len, MADV_HUGEPAGE);  // advice only: without THP the pages stay 4 KiB
  MappedMemory m;
  m.base_ = static_cast<uint8_t*>(p);
  m.size_ = len;
  return m;
}

MappedMemory& MappedMemory::operator=(MappedMemory&& o) noexcept {
  if (this != &o) {
    Unmap();
    base_ = o.base_;
    size_ = o.size_;
    o.base_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void MappedMemory::Unmap() {
  if (base_) ::munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
}

}  // namespace tierlm
