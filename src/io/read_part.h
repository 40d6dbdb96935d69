// ReadPart: one contiguous pread (or, for spill files, pwrite) of a request, and how a
// request is split into parts so that only whole aligned blocks go to an O_DIRECT
// descriptor (see storage_env.h, "Alignment contract"). Internal to the POSIX env and its
// async engines.
#pragma once

#include <cstdint>
#include <vector>

namespace tierlm::io {

struct ReadPart {
  int fd = -1;
  int fallback_fd = -1;   // buffered descriptor to retry on if `fd` refuses direct I/O
  uint64_t offset = 0;
  uint64_t len = 0;
  uint8_t* dst = nullptr;  // for a write: the bytes written (not modified)
  bool fragment = false;  // an unaligned head/tail read through the page cache
  bool write = false;     // pwrite dst's bytes instead of reading into it
};

// Splits [offset, offset+len) into parts: one buffered part when direct_fd < 0 or the
// alignment of dst does not match offset; otherwise an aligned body on direct_fd and up to
// two buffered fragments.
std::vector<ReadPart> SplitRead(int direct_fd, int buffered_fd, uint64_t offset, uint64_t len, uint8_t* dst);

struct PartOutcome {
  int err = 0;              // errno of the failure, 0 if none
  bool eof = false;         // the file ended before len bytes (a write: wrote nothing)
  bool fell_back = false;   // direct I/O was refused and the part was read buffered
  uint64_t bytes = 0;
};

// Reads (writes) the whole part with pread (pwrite), retrying EINTR and short transfers;
// on EINVAL from the direct descriptor retries on fallback_fd.
PartOutcome ReadPartFully(const ReadPart& part);

}  // namespace tierlm::io
