// BlockTier: a store of KV blocks outside the paged cache, shared by restarts (the local
// disk: disk_block_tier.h) or by several processes and machines (Redis: redis_block_tier.h).
//
// Blocks are keyed by (identity, hash): the KV identity of the model and format
// (prefix/kv_identity.h) and the block's chained content hash (kv/kv_block_manager.h), so
// one store can hold the blocks of many models without ever mixing them. The value is the
// block's bytes, stored as a checksummed BlockRecord (prefix/block_record.h).
//
// A tier never fails a request: an absent, torn, corrupt or unreadable block, a full disk,
// an unreachable server, all end in a miss (or a dropped write) and a counter.
//
// Threads: Contains, Load and Store are called from one thread (the scheduler's compute
// thread, or run's); writes happen on the tier's own background thread; Counters may be
// read from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace tierlm::prefix {

struct TierCounters {
  uint64_t lookups = 0;          // blocks asked for by Load
  uint64_t hits = 0;             // blocks Load handed over intact
  uint64_t misses = 0;           // blocks asked for and not handed over (absent, corrupt, error)
  uint64_t corrupt = 0;          // of the misses: found but failed the record check
  uint64_t errors = 0;           // I/O errors, an unreachable or failing server (reads and writes)
  uint64_t stored = 0;           // blocks written
  uint64_t dropped = 0;          // blocks Store did not write (queue full, no space, an error)
  uint64_t evicted = 0;          // blocks removed to stay within the size bound
  uint64_t bytes_read = 0;       // payload bytes Load handed over
  uint64_t bytes_written = 0;    // record bytes written
  uint64_t resident_bytes = 0;   // bytes the tier holds now (disk: its files; Redis: 0, unknown)
  uint64_t resident_blocks = 0;  // blocks it holds now (Redis: 0, unknown)
  double load_seconds = 0;       // wall time spent in Load, for a bandwidth estimate
};

class BlockTier {
 public:
  using Sink = std::function<bool(size_t index, std::span<const uint8_t> payload)>;

  virtual ~BlockTier() = default;
  // "disk" or "redis": the name in metrics and reports.
  virtual std::string name() const = 0;
  // How many blocks of the chain `hashes` (in order) the tier holds, counted from the
  // first and stopping at the first it lacks. Cheap: an index lookup, or one pipelined
  // round trip. Trouble answers 0 (and counts an error).
  virtual size_t Contains(uint64_t identity, std::span<const uint64_t> hashes) = 0;
  // Reads the blocks of `hashes`, in order, keeping several reads in flight while the sink
  // copies earlier ones, and hands each intact payload to sink(i, payload), i = 0, 1, ...
  // (the span is valid during the call only). Stops at the first block that is absent,
  // corrupt (a record that fails CheckRecord with payload_bytes) or unreadable, or when the
  // sink returns false. Returns how many blocks the sink took.
  virtual size_t Load(uint64_t identity, std::span<const uint64_t> hashes, uint64_t payload_bytes,
                      const Sink& sink) = 0;
  // Queues a block for the background writer and returns at once; a block the tier already
  // holds is not written again. Dropped (and counted) when the queue is full or the tier
  // cannot take it now.
  virtual void Store(uint64_t identity, uint64_t hash, std::vector<uint8_t> payload) = 0;
  // Waits until every block queued so far has been written or dropped.
  virtual void Flush() = 0;
  virtual TierCounters Counters() const = 0;
};

}  // namespace tierlm::prefix
