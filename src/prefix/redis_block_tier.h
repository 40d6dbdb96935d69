// RedisBlockTier: the prefix cache's blocks in a Redis server that several tierlm
// processes (and machines) share.
//
// Keys and values. A block is the string key
//   key_prefix + "v1:" + hex16(identity) + ":" + hex16(hash)
// holding the whole BlockRecord (prefix/block_record.h: header, payload, checksums), SET
// with EX ttl_seconds when that is positive. A value is used only if CheckRecord passes;
// anything else (garbage, a truncated value, another block's record) is a miss counted
// corrupt. The tier never deletes a key: Redis' own maxmemory policy (allkeys-lru, ...)
// decides what stays, and a block it evicted is an ordinary miss.
//
// Round trips. Contains is one pipelined round trip (an EXISTS per block, counted from the
// first and stopping at the first absent one). Load pipelines its GETs, keeping
// pipeline_depth of them in flight while the sink copies earlier blocks. Replies that a
// call stopped early no longer wants (after a miss, or a sink that returned false) are
// read and dropped at the start of the next call on that connection, so every reply
// meets its request.
//
// Writes. Store encodes the record and queues it (at most max_queued_bytes, counting the
// blocks being written; beyond that a Store is dropped and counted) for a background
// writer thread with its own connection (a hiredis context is not thread-safe), which keeps
// pipeline_depth SETs in flight. A block already queued is not queued twice; a block
// written earlier is written again (Redis may have evicted it; SET is idempotent).
// Flush waits until the queue is empty.
//
// Failure never fails a call. Connections are made lazily, so Open needs no server. All
// I/O is non-blocking under poll: connecting waits at most connect_timeout_s, and every
// reply (Contains: all of its replies together) at most io_timeout_s, so a stopped or
// slow server costs one timeout, not a hang. Any I/O error, timeout or closed connection
// drops that connection, counts an error, and turns the call into misses (a Store into a
// drop); no reconnect is tried for retry_after_s, during which calls are instant misses;
// after it the next call reconnects (AUTH, SELECT) by itself. A connection the server
// closed while idle (its timeout, CLIENT KILL, a restart) is noticed before it is used and
// replaced at once, without a failure. A server's error reply
// (NOAUTH, OOM, WRONGTYPE) is a miss or a drop and an error, the connection kept. Host
// names are resolved by getaddrinfo, which the timeouts do not bound (use an address where
// DNS may hang). SIGPIPE from a write to a closed connection is blocked and consumed,
// never delivered.
//
// Threads: as BlockTier (block_tier.h): Contains, Load, Store and Flush from one thread;
// Counters and LastError from any.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/status.h"
#include "prefix/block_tier.h"
#include "prefix/redis_url.h"

namespace tierlm::prefix {

struct RedisTierOptions {
  std::string url;                      // redis://[[user]:password@]host[:port][/db] or unix:///path (redis_url.h)
  int64_t ttl_seconds = 0;              // > 0: every SET gets this TTL (EX)
  double connect_timeout_s = 0.5;       // TCP or socket connect
  double io_timeout_s = 1.0;            // the longest wait for a reply: past it, a miss and an error
  double retry_after_s = 1.0;           // after a failure, no reconnect for this long (instant misses)
  size_t max_queued_bytes = 256 << 20;  // records queued or being written; Store drops beyond
  size_t pipeline_depth = 8;            // GETs (Load) and SETs (the writer) in flight
  std::string key_prefix = "tierlm:kv:";
};

// The key of a block: key_prefix + "v1:" + hex16(identity) + ":" + hex16(hash).
std::string RedisBlockKey(const std::string& key_prefix, uint64_t identity, uint64_t hash);

class RedisConnection;  // redis_block_tier.cpp: one hiredis context, its timeouts and reconnects

class RedisBlockTier : public BlockTier {
 public:
  // InvalidArgument naming the fault for a malformed URL or a bad option; does not
  // connect (a server that is down means misses, not a failed Open).
  static Result<std::unique_ptr<RedisBlockTier>> Open(const RedisTierOptions& options);
  // Writes what is queued (bounded by the timeouts; dropped when the server is away).
  ~RedisBlockTier() override;
  RedisBlockTier(const RedisBlockTier&) = delete;
  RedisBlockTier& operator=(const RedisBlockTier&) = delete;

  std::string name() const override { return "redis"; }
  size_t Contains(uint64_t identity, std::span<const uint64_t> hashes) override;
  size_t Load(uint64_t identity, std::span<const uint64_t> hashes, uint64_t payload_bytes,
              const Sink& sink) override;
  void Store(uint64_t identity, uint64_t hash, std::vector<uint8_t> payload) override;
  void Flush() override;
  // lookups = hits + misses: a Load counts the blocks it handed over and the one it
  // stopped at (absent, corrupt, unreadable); not a block the sink declined. errors: one
  // per call (or per writer pipeline) that met a failure or an error reply, including
  // the instant misses while no reconnect is tried. resident_*: 0 (Redis' to know).
  TierCounters Counters() const override;

  const RedisEndpoint& endpoint() const { return endpoint_; }
  // The last error either connection met, for logs ("" when none): names the server,
  // never the password.
  std::string LastError() const;

 private:
  struct Job {
    uint64_t identity = 0;
    uint64_t hash = 0;
    std::string key;
    std::vector<uint8_t> record;
  };

  RedisBlockTier(const RedisTierOptions& options, RedisEndpoint endpoint);
  void WriterLoop();
  // Counts a written or dropped block and lets Flush go when nothing is left.
  void Finish(const Job& job, bool written);
  void NoteError(const Status& status);

  const RedisTierOptions options_;
  const RedisEndpoint endpoint_;
  std::unique_ptr<RedisConnection> reader_;  // Contains and Load, on the caller's thread
  std::unique_ptr<RedisConnection> writer_;  // the writer thread's

  mutable std::mutex counters_mu_;
  TierCounters counters_;
  std::string last_error_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;  // a job queued, or stop
  std::condition_variable done_cv_;   // outstanding_ reached 0
  std::deque<Job> queue_;
  std::set<std::pair<uint64_t, uint64_t>> pending_;  // (identity, hash) queued or being written
  size_t queued_bytes_ = 0;                          // their record bytes
  size_t outstanding_ = 0;                           // their count
  bool stop_ = false;
  std::thread writer_thread_;
};

}  // namespace tierlm::prefix
