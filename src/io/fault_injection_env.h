// FaultInjectionEnv: wraps another StorageEnv and makes its reads fail, come up short,
// hit a truncated end, or take longer, and its spill files' writes fail, come up short or
// find the disk full, deterministically (RocksDB FaultInjectionTestFS).
//
// Faults are decided per read, in submission order, from a seeded generator, so a test
// that submits the same reads sees the same faults. Latency is charged on the env's Clock:
// with a ManualClock, waiting for a slow read advances simulated time instead of
// sleeping, so "prefetch hides latency" is tested exactly, with no timing flakiness.
//
// Thread safety: every method may be called from any thread. SetFaults() applies to files
// already open. REQUIRES: the env outlives its files; the wrapped env outlives this one.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <set>
#include <utility>

#include "io/clock.h"
#include "io/storage_env.h"

namespace tierlm::io {

struct FaultSpec {
  // Seeds the generator behind error_one_in and short_read_one_in. Default: 0.
  uint64_t seed = 0;
  // Each read fails (kIoError "injected fault") with probability 1/n. 0: never.
  uint32_t error_one_in = 0;
  // Reads overlapping file bytes [fail_begin, fail_end) fail. Empty range: none.
  uint64_t fail_begin = 0;
  uint64_t fail_end = 0;
  // Each read delivers only half its bytes, reported as kIoError "short read". 0: never.
  uint32_t short_read_one_in = 0;
  // Reads overlapping file bytes [short_begin, short_end) come up short the same way.
  uint64_t short_begin = 0;
  uint64_t short_end = 0;
  // The file ends here: reads past it deliver the bytes before it and kIoError
  // "unexpected end of file". UINT64_MAX: not truncated.
  uint64_t truncate_at = UINT64_MAX;
  // Added to every read (sync: the caller sleeps on the clock; async: the result becomes
  // visible to Poll/Wait this long after Submit). Default: 0.
  int64_t latency_nanos = 0;

  // Spill files (their reads take the read faults above; these are for writes).
  // Each write fails (kIoError "injected write fault") with probability 1/n. 0: never.
  uint32_t write_error_one_in = 0;
  // Writes overlapping file bytes [write_fail_begin, write_fail_end) fail.
  uint64_t write_fail_begin = 0;
  uint64_t write_fail_end = 0;
  // Each write stores only half its bytes, reported as kIoError "short write". 0: never.
  uint32_t short_write_one_in = 0;
  // The disk holds this many bytes of spill data (counted in 4 KiB pages first written,
  // over all spill files): a write that needs a new page beyond it fails with "No space
  // left on device" and writes nothing. UINT64_MAX: unlimited.
  uint64_t disk_space_bytes = UINT64_MAX;
};

struct FaultCounters {
  uint64_t reads = 0;
  uint64_t injected_errors = 0;  // one_in and range faults
  uint64_t short_reads = 0;
  uint64_t truncated_reads = 0;
  uint64_t writes = 0;
  uint64_t injected_write_errors = 0;
  uint64_t short_writes = 0;
  uint64_t disk_full_writes = 0;
};

class FaultInjectionEnv : public StorageEnvWrapper {
 public:
  // clock: not owned; default the system clock.
  explicit FaultInjectionEnv(StorageEnv* base, Clock* clock = nullptr);

  void SetFaults(const FaultSpec& spec);
  void ClearFaults() { SetFaults(FaultSpec{}); }
  FaultCounters counters() const;
  // Spill-file bytes on the simulated disk: 4 KiB pages written so far, over all files.
  uint64_t spill_bytes_used() const;
  Clock* clock() const { return clock_; }

  Result<std::unique_ptr<RandomAccessFile>> OpenForRandomRead(const std::string& path,
                                                              const FileOptions& options = {}) override;
  // The base env's spill file, its reads and writes subject to the faults (performed
  // synchronously; Submit/SubmitWrite complete at once).
  Result<std::unique_ptr<SpillFile>> CreateSpillFile(const std::string& dir, uint64_t capacity) override;

  enum class Fault : uint8_t { kNone, kError, kShortRead, kTruncated, kDiskFull };
  struct Decision {
    Fault fault = Fault::kNone;
    int64_t latency_nanos = 0;
    uint64_t truncate_at = UINT64_MAX;
  };
  // Decides the fate of one read of [offset, offset+len); counts it.
  Decision Decide(uint64_t offset, uint64_t len);
  // The same for one write of a spill file (`file` tells files apart for disk space).
  Decision DecideWrite(const void* file, uint64_t offset, uint64_t len);

 private:
  Clock* clock_;
  mutable std::mutex mu_;
  FaultSpec spec_;
  std::mt19937_64 rng_;
  FaultCounters counters_;
  std::set<std::pair<const void*, uint64_t>> pages_;  // spill pages written (disk space)
};

}  // namespace tierlm::io
