// PrefixCache: reuses the keys and values of prompt prefixes computed before, from three
// tiers, nearest first:
//   memory  blocks of finished (or running) sequences still in the paged cache, taken by
//           reference (KvBlockManager::AttachCached: same budget as the rest of the cache);
//   disk    a bounded directory of segment files that survives restarts (disk_block_tier.h);
//   redis   a redis-server shared by several tierlm processes (redis_block_tier.h).
//
// Keys are the paged cache's chained block hashes (kv_block_manager.h), which fold in the
// KV identity (the model's content, the KV types and block size, the KV format version:
// kv::KvIdentity) and a per-request root (a tenant's cache_salt), so blocks of other
// models, formats or tenants never match. Only full blocks are cached, and a prompt always
// keeps at least its last token to compute (its logits are needed).
//
// Exact: a block's bytes do not depend on how its sequence was batched (batch invariance),
// so a sequence continued from cached blocks gives bit-identical output to one computed
// cold.
//
// A lower tier's hit is taken only when loading it is predicted faster than recomputing
// it: bytes over the tier's measured read bandwidth against tokens over the caller's
// measured prefill rate.
//
// Publishing: after a forward pass the caller calls Publish for each sequence; its newly
// computed full blocks are copied out of the cache and queued to every tier that lacks
// them (written by the tiers' background threads, off the compute path).
//
// Threads: Attach, Publish, Fork, Forget from the thread that owns the paged cache; Stats
// from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>

#include "core/status.h"
#include "kv/paged_kv_cache.h"
#include "prefix/block_tier.h"

namespace tierlm::prefix {

// Positions a sequence took from each tier.
struct PrefixHit {
  int64_t memory_tokens = 0;
  int64_t disk_tokens = 0;
  int64_t redis_tokens = 0;
  double load_ms = 0;  // time spent loading disk and Redis blocks
  int64_t tokens() const { return memory_tokens + disk_tokens + redis_tokens; }
};

struct PrefixCacheStats {
  uint64_t lookups = 0;          // sequences looked up
  uint64_t lookup_tokens = 0;    // prompt tokens looked up
  uint64_t memory_tokens = 0;    // tokens reused from each tier
  uint64_t disk_tokens = 0;
  uint64_t redis_tokens = 0;
  uint64_t declined_blocks = 0;  // held by a tier, but recomputing was predicted faster
  uint64_t published_blocks = 0; // blocks queued to a tier
  uint64_t export_errors = 0;    // blocks that could not be copied out of the cache
  bool has_disk = false, has_redis = false;
  TierCounters disk, redis;
};

class PrefixCache {
 public:
  // Either tier may be null (absent). memory: reuse blocks still in the paged cache.
  PrefixCache(std::unique_ptr<BlockTier> disk, std::unique_ptr<BlockTier> redis, bool memory = true);
  ~PrefixCache();  // Flush()

  // Starts sequence `seq` (which must not exist) of the prompt `tokens` from the longest
  // prefix of it the tiers hold: its blocks are attached or loaded, its tokens appended
  // and its computed watermark set, so that the caller continues at hit.tokens(). Blocks
  // the cache cannot make room for, or that fail to load, are simply not reused.
  // recompute_tokens_per_s: the caller's measured prefill rate (0: unknown, load always).
  // Errors: only a broken cache (the sequence exists already; its tokens do not match).
  Result<PrefixHit> Attach(kv::PagedKvCache& cache, kv::SeqId seq, std::span<const int32_t> tokens, uint64_t root,
                           double recompute_tokens_per_s = 0);
  // Queues the computed full blocks of `seq` not yet published to the tiers that lack them.
  void Publish(kv::PagedKvCache& cache, kv::SeqId seq);
  // `child` was forked from `parent`: it shares what parent published.
  void Fork(kv::SeqId parent, kv::SeqId child);
  // The sequence is gone (call when it is freed).
  void Forget(kv::SeqId seq);
  // Waits for the tiers' queued writes.
  void Flush();

  bool memory() const { return memory_; }
  BlockTier* disk() { return disk_.get(); }
  BlockTier* redis() { return redis_.get(); }
  PrefixCacheStats Stats() const;

  // The root of a request's block chain: 0 without a salt, else a hash of it.
  static uint64_t RootFor(const std::string& cache_salt);

 private:
  struct SeqState {
    size_t published = 0;   // blocks handled by Publish
    size_t known[2] = {0, 0};  // leading blocks the disk / Redis tier is known to hold
  };
  bool WorthLoading(BlockTier& tier, int64_t blocks, uint64_t payload_bytes, int64_t tokens,
                    double recompute_tokens_per_s);

  std::unique_ptr<BlockTier> disk_, redis_;
  bool memory_;
  std::unordered_map<kv::SeqId, SeqState> seqs_;
  mutable std::mutex mu_;  // stats_
  PrefixCacheStats stats_;
};

}  // namespace tierlm::prefix
