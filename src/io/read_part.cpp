#include "io/read_part.h"

#include <unistd.h>

#include <cerrno>

#include "io/storage_env.h"

namespace tierlm::io {

std::vector<ReadPart> SplitRead(int direct_fd, int buffered_fd, uint64_t offset, uint64_t len, uint8_t* dst) {
  std::vector<ReadPart> parts;
  if (len == 0) return parts;
  const uint64_t a0 = AlignUp(offset), a1 = AlignDown(offset + len);
  const bool dst_matches = (reinterpret_cast<uintptr_t>(dst) + (a0 - offset)) % kDirectIoAlignment == 0;
  if (direct_fd < 0 || a1 <= a0 || !dst_matches) {
    parts.push_back({buffered_fd, -1, offset, len, dst, false});
    return parts;
  }
  if (a0 > offset) parts.push_back({buffered_fd, -1, offset, a0 - offset, dst, true});
  parts.push_back({direct_fd, buffered_fd, a0, a1 - a0, dst + (a0 - offset), false});
  if (offset + len > a1) parts.push_back({buffered_fd, -1, a1, offset + len - a1, dst + (a1 - offset), true});
  return parts;
}

PartOutcome ReadPartFully(const ReadPart& part) {
  PartOutcome out;
  int fd = part.fd;
  while (out.bytes < part.len) {
    const off_t at = static_cast<off_t>(part.offset + out.bytes);
    const ssize_t r = part.write ? ::pwrite(fd, part.dst + out.bytes, part.len - out.bytes, at)
                                 : ::pread(fd, part.dst + out.bytes, part.len - out.bytes, at);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && part.fallback_fd >= 0 && fd != part.fallback_fd) {
        fd = part.fallback_fd;
        out.fell_back = true;
        continue;
      }
      out.err = errno;
      return out;
    }
    if (r == 0) {
      out.eof = true;
      return out;
    }
    out.bytes += static_cast<uint64_t>(r);
  }
  return out;
}

}  // namespace tierlm::io
