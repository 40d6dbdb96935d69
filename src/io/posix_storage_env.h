// PosixStorageEnv: files on a local file system, read with O_DIRECT where the file system
// allows it (so streamed weights bypass the page cache and process memory stays within the
// tiers' budgets), asynchronously through io_uring when the kernel allows it, else through
// a small pool of pread threads.
//
// Fallbacks are automatic and reported in RandomAccessFile::stats():
//   - O_DIRECT refused at open or on the first read (tmpfs, some FUSE/overlay file systems):
//     buffered reads, note "O_DIRECT refused ...".
//   - io_uring unavailable (old kernel, seccomp, built without liburing): engine "threads".
// See storage_env.h for the alignment contract (no bounce buffers) and identity checks.
//
// Thread safety: every method may be called from any thread.
// REQUIRES: the env outlives the files it opens.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "io/storage_env.h"

namespace tierlm::io {

class UringReadQueue;
class ReadThreadPool;

enum class AsyncEngine : uint8_t {
  kAuto,     // io_uring if it starts, else threads
  kUring,    // io_uring; threads (noted in stats) if it does not start
  kThreads,  // pread on worker threads
};

struct PosixEnvOptions {
  // Open with O_DIRECT. Default: true. Off: every read goes through the page cache.
  bool direct_io = true;
  // Default: kAuto.
  AsyncEngine engine = AsyncEngine::kAuto;
  // io_uring ops in flight (each up to 4 MiB). Default: 64. More helps NVMe arrays.
  unsigned queue_depth = 64;
  // Worker threads of the pread fallback. Default: 4.
  int n_threads = 4;
};

class PosixStorageEnv : public StorageEnv {
 public:
  explicit PosixStorageEnv(PosixEnvOptions options = {});
  ~PosixStorageEnv() override;

  Result<std::unique_ptr<RandomAccessFile>> OpenForRandomRead(const std::string& path,
                                                              const FileOptions& options = {}) override;
  // An unlinked file in `dir` (O_TMPFILE, else a unique name removed at once), its space
  // reserved with posix_fallocate (ENOSPC fails here), written and read with O_DIRECT where
  // the file system takes it,
  // asynchronously through the same io_uring queue (posix_spill_file.cpp).
  Result<std::unique_ptr<SpillFile>> CreateSpillFile(const std::string& dir, uint64_t capacity) override;
  const PosixEnvOptions& options() const { return options_; }

  // The async engine, started on first use: either a uring queue or a thread pool is set.
  struct Engine {
    UringReadQueue* uring = nullptr;
    ReadThreadPool* threads = nullptr;
    std::string name;  // "io_uring" or "threads"
    std::string note;  // why not io_uring, if asked for
  };
  const Engine& engine();

 private:
  PosixEnvOptions options_;
  std::once_flag engine_once_;
  Engine engine_;
  std::unique_ptr<UringReadQueue> uring_;
  std::unique_ptr<ReadThreadPool> threads_;
};

}  // namespace tierlm::io
