// UringReadQueue: asynchronous preads through io_uring (liburing), shared by every file of
// a PosixStorageEnv. Requests are split into ops of at most kOpBytes so one large tensor
// keeps many device queue slots busy; at most `depth` ops are in flight, and ops beyond
// wait in a backlog that the reaper submits as slots free, so Submit() never blocks on I/O
// (a layer's worth of KV block reads is queued at once while compute goes on). A reaper thread completes ops, resubmits the rest of a
// short read, retries EINVAL on a direct descriptor on its buffered twin, and calls the
// request's callback on the reaper thread when its last op completes. Parts marked
// `write` (spill files) are written the same way.
//
// Only compiled with TIERLM_HAVE_URING; Create() also fails at run time where the kernel
// or a seccomp filter refuses io_uring, and the env falls back to threads.
//
// Thread safety: Submit() may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/read_part.h"

namespace tierlm::io {

class UringReadQueue {
 public:
  static constexpr uint64_t kOpBytes = 4 << 20;
  using Done = std::function<void(const PartOutcome& total)>;

  // nullptr and *why_not set if io_uring is unavailable.
  static std::unique_ptr<UringReadQueue> Create(unsigned depth, std::string* why_not);
  virtual ~UringReadQueue() = default;

  // Reads every part; calls done once with the summed outcome (first error wins).
  // REQUIRES: the parts' fds and dsts stay valid until done is called.
  virtual void Submit(std::vector<ReadPart> parts, Done done) = 0;
};

}  // namespace tierlm::io
