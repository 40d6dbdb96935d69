// StorageEnv: the seam for all file I/O of the tiers (leveldb Env, RocksDB FileSystem).
// Weight shards and expert files are read through it, and spilled KV blocks are written to
// and read back from a spill file it creates, so every tier can be tested on in-memory
// files with injected faults.
//
//   StorageEnv        opens files for random reads; creates private spill files.
//   RandomAccessFile  one open file: sync ReadAt(), async Submit() -> id, Poll(), Wait().
//   SpillFile         a RandomAccessFile that is also written: WriteAt(), SubmitWrite().
//
// Alignment contract: any offset, length and destination are accepted. On a file opened
// for direct I/O (O_DIRECT), the bytes of [offset, offset + len) that lie in whole
// kDirectIoAlignment blocks, with dst aligned to match, go to the device directly; an
// unaligned head or tail fragment (< 4 KiB each) is read through the page cache instead,
// and a request whose dst is misaligned relative to its offset is read buffered entirely.
// No bounce buffers are allocated, so callers that keep offset, len and dst aligned
// (the tiers do) hold every byte of the read in their own budgeted memory.
//
// Identity: a file's size, mtime and inode are captured at open. Unless disabled, each
// read first re-checks them; a file replaced or truncated since open fails the read with
// kCorruption ("... changed since open ...") instead of returning other bytes.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/status.h"

namespace tierlm::io {

inline constexpr uint64_t kDirectIoAlignment = 4096;

inline constexpr uint64_t AlignDown(uint64_t x, uint64_t a = kDirectIoAlignment) { return x / a * a; }
inline constexpr uint64_t AlignUp(uint64_t x, uint64_t a = kDirectIoAlignment) { return (x + a - 1) / a * a; }

// What a read is for; carried to stats and (later) to per-class queues.
enum class IoClass : uint8_t { kWeight = 0, kExpert = 1, kKv = 2 };
inline constexpr int kNumIoClasses = 3;
const char* IoClassName(IoClass c);

enum class IoPriority : uint8_t {
  kDemand,    // a caller is blocked on it
  kPrefetch,  // speculative; may be served after demand reads
};

// Per-request options (RocksDB IOOptions).
struct IoOptions {
  IoClass io_class = IoClass::kWeight;
  IoPriority priority = IoPriority::kDemand;
};

enum class IdentityCheck : uint8_t {
  kEveryRead,  // re-stat before each read (two syscalls; negligible next to a tensor read)
  kNever,      // trust the file not to change
};

struct FileOptions {
  // Default: kEveryRead.
  IdentityCheck identity_check = IdentityCheck::kEveryRead;
};

// What identifies a file's contents at open time.
struct FileIdentity {
  uint64_t size = 0;
  int64_t mtime_nanos = 0;
  uint64_t inode = 0;  // 0 where the env has none (memory); a generation number there
  bool operator==(const FileIdentity&) const = default;
  std::string ToString() const;  // "size 123, mtime 456, inode 7"
};

using ReadId = uint64_t;

struct ReadRequest {
  uint64_t offset = 0;
  uint64_t len = 0;
  uint8_t* dst = nullptr;  // len bytes; the caller keeps it alive until the result is taken
  IoOptions options;
  uint64_t user_data = 0;  // returned in the result unchanged
};

struct ReadResult {
  ReadId id = 0;
  uint64_t user_data = 0;
  Status status;           // OK means bytes == the request's len
  uint64_t bytes = 0;      // bytes placed in dst (may be < len on error)
  int64_t latency_nanos = 0;
};

// How a file is being read; for `tierlm bench` and plan output.
struct FileStats {
  std::string engine;      // "io_uring", "threads", "memory", "sync", ...
  bool direct_io = false;  // O_DIRECT in use
  std::string note;        // e.g. "O_DIRECT refused by the file system (EINVAL): buffered reads"
  uint64_t reads = 0;
  uint64_t bytes_read = 0;
  uint64_t buffered_fragment_reads = 0;  // unaligned heads/tails read through the page cache
  uint64_t writes = 0;                   // spill files
  uint64_t bytes_written = 0;
};

// Completed reads waiting to be collected; the shared part of every async implementation.
// Thread safety: all methods may be called concurrently.
class ReadCompletions {
 public:
  ReadId Start();                       // reserves an id for a request being submitted
  void Complete(ReadResult r);          // r.id from Start(); wakes waiters
  std::vector<ReadResult> TakeAll();    // every completed, uncollected result
  // See RandomAccessFile::Wait.
  Status Wait(std::span<const ReadId> ids, int64_t timeout_nanos, std::vector<ReadResult>* done);
  size_t outstanding() const;
  void WaitNonePending();               // blocks until every started read has completed

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  ReadId next_id_ = 1;
  std::unordered_set<ReadId> pending_;  // started, not completed
  std::vector<ReadResult> completed_; // completed, not collected
};

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;

  virtual const std::string& name() const = 0;
  // Identity captured at open.
  virtual const FileIdentity& identity() const = 0;
  uint64_t size() const { return identity().size; }

  // Re-reads the identity; kCorruption naming old and new identity if it changed.
  virtual Status CheckIdentity() = 0;

  // Reads exactly len bytes at offset into dst.
  // REQUIRES: offset + len <= size(); dst holds len bytes.
  // Errors: kOutOfRange past the end, kCorruption if the file changed since open,
  // kIoError (naming file and offset) if the OS fails or the file ends early.
  // Thread safety: may be called concurrently with any method.
  virtual Status ReadAt(uint64_t offset, uint64_t len, uint8_t* dst, const IoOptions& options = {}) = 0;

  // Starts an asynchronous read and returns its id; the outcome (including argument
  // errors) arrives as a ReadResult. REQUIRES: as ReadAt; dst stays valid, and is not
  // read or written by the caller, until the result is collected.
  // Default: performs the read synchronously and completes it at once.
  virtual ReadId Submit(const ReadRequest& request);

  // Returns every completed read not yet collected, without blocking. Each result is
  // delivered exactly once, by Poll() or Wait(), whichever collects it first.
  virtual std::vector<ReadResult> Poll();

  // Blocks until every read in `ids` has completed or `timeout_nanos` has passed
  // (negative: no limit). Appends the results of those that completed to *done and
  // returns OK if all did; kIoError ("timed out") otherwise (the rest stay in flight).
  // kInvalidArgument if an id is unknown or was already collected.
  virtual Status Wait(std::span<const ReadId> ids, int64_t timeout_nanos, std::vector<ReadResult>* done);

  virtual FileStats stats() const;

 protected:
  ReadCompletions completions_;  // used by the default async implementation
};

struct WriteRequest {
  uint64_t offset = 0;
  uint64_t len = 0;
  const uint8_t* src = nullptr;  // len bytes; the caller keeps them unchanged until the result is taken
  IoOptions options;
  uint64_t user_data = 0;  // returned in the result unchanged
};

// A private scratch file of fixed capacity that the tiers write and read back (spilled KV
// blocks). It has no name in the file system: it is unlinked as soon as it exists, so it
// disappears when closed or when the process dies, and no other process can change it.
// Its identity never changes (size() is the capacity); CheckIdentity always passes.
//
// Writes and reads follow the alignment contract above; the tiers keep both aligned, so on
// a file system that takes O_DIRECT every byte goes to the device directly. Bytes never
// written read back as zeros (a sparse file), but callers never read what they did not
// write. The POSIX env reserves the whole capacity at creation where the file system can
// (so a disk too small fails CreateSpillFile); elsewhere a full disk is found when a write
// fails (kIoError "No space left on device").
class SpillFile : public RandomAccessFile {
 public:
  // Writes exactly len bytes at offset. REQUIRES: offset + len <= size().
  // Errors: kOutOfRange past the capacity; kIoError naming the file, offset and the OS
  // error (ENOSPC, EIO, ...) or a short write. Thread safety: as ReadAt.
  virtual Status WriteAt(uint64_t offset, uint64_t len, const uint8_t* src, const IoOptions& options = {}) = 0;
  // Starts an asynchronous write; its outcome arrives as a ReadResult (bytes = bytes
  // written) from Poll()/Wait(), in the same id space as reads.
  // Default: performs the write synchronously and completes it at once.
  virtual ReadId SubmitWrite(const WriteRequest& request);
};

class StorageEnv {
 public:
  virtual ~StorageEnv() = default;
  // Opens `path` for random reads and captures its identity.
  // Errors: kNotFound, kIoError naming the path.
  // Thread safety: may be called from any thread.
  virtual Result<std::unique_ptr<RandomAccessFile>> OpenForRandomRead(const std::string& path,
                                                                      const FileOptions& options = {}) = 0;
  // Creates a private spill file of `capacity` bytes in directory `dir` (see SpillFile).
  // Errors: kIoError naming the directory (missing, read-only, not a directory);
  // kUnsupported where the env has no spill files. Default: kUnsupported.
  virtual Result<std::unique_ptr<SpillFile>> CreateSpillFile(const std::string& dir, uint64_t capacity);
};

// Forwards everything to another env (leveldb EnvWrapper); override what you change.
class StorageEnvWrapper : public StorageEnv {
 public:
  explicit StorageEnvWrapper(StorageEnv* target) : target_(target) {}
  Result<std::unique_ptr<RandomAccessFile>> OpenForRandomRead(const std::string& path,
                                                              const FileOptions& options = {}) override {
    return target_->OpenForRandomRead(path, options);
  }
  Result<std::unique_ptr<SpillFile>> CreateSpillFile(const std::string& dir, uint64_t capacity) override {
    return target_->CreateSpillFile(dir, capacity);
  }
  StorageEnv* target() const { return target_; }

 private:
  StorageEnv* target_;
};

// Checks the arguments every ReadAt shares; kOutOfRange naming the file if past the end.
Status CheckReadRange(const std::string& name, uint64_t file_size, uint64_t offset, uint64_t len);
// The same for a write.
Status CheckWriteRange(const std::string& name, uint64_t file_size, uint64_t offset, uint64_t len);

}  // namespace tierlm::io
