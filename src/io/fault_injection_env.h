// FaultInjectionEnv: wraps another StorageEnv and makes its reads fail, come up short,
// hit a truncated end, or take longer, deterministically (RocksDB FaultInjectionTestFS).
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
  // The file ends here: reads past it deliver the bytes before it and kIoError
  // "unexpected end of file". UINT64_MAX: not truncated.
  uint64_t truncate_at = UINT64_MAX;
  // Added to every read (sync: the caller sleeps on the clock; async: the result becomes
  // visible to Poll/Wait this long after Submit). Default: 0.
  int64_t latency_nanos = 0;
};

struct FaultCounters {
  uint64_t reads = 0;
  uint64_t injected_errors = 0;  // one_in and range faults
  uint64_t short_reads = 0;
  uint64_t truncated_reads = 0;
};

class FaultInjectionEnv : public StorageEnvWrapper {
 public:
  // clock: not owned; default the system clock.
  explicit FaultInjectionEnv(StorageEnv* base, Clock* clock = nullptr);

  void SetFaults(const FaultSpec& spec);
  void ClearFaults() { SetFaults(FaultSpec{}); }
  FaultCounters counters() const;
  Clock* clock() const { return clock_; }

  Result<std::unique_ptr<RandomAccessFile>> OpenForRandomRead(const std::string& path,
                                                              const FileOptions& options = {}) override;

  enum class Fault : uint8_t { kNone, kError, kShortRead, kTruncated };
  struct Decision {
    Fault fault = Fault::kNone;
    int64_t latency_nanos = 0;
    uint64_t truncate_at = UINT64_MAX;
  };
  // Decides the fate of one read of [offset, offset+len); counts it.
  Decision Decide(uint64_t offset, uint64_t len);

 private:
  Clock* clock_;
  mutable std::mutex mu_;
  FaultSpec spec_;
  std::mt19937_64 rng_;
  FaultCounters counters_;
};

}  // namespace tierlm::io
