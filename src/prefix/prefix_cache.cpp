#include "prefix/prefix_cache.h"

#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace tierlm::prefix {
namespace {

// Read bandwidths assumed until a tier has measured its own (bytes per second).
constexpr double kDefaultBandwidth[2] = {1.0e9, 2.0e8};
// A tier's fixed cost of one Load (a round trip, a first read), seconds.
constexpr double kLoadLatencyS = 2e-3;

}  // namespace

PrefixCache::PrefixCache(std::unique_ptr<BlockTier> disk, std::unique_ptr<BlockTier> redis, bool memory)
    : disk_(std::move(disk)), redis_(std::move(redis)), memory_(memory) {
  stats_.has_disk = disk_ != nullptr;
  stats_.has_redis = redis_ != nullptr;
}

PrefixCache::~PrefixCache() { Flush(); }

uint64_t PrefixCache::RootFor(const std::string& cache_salt) {
  if (cache_salt.empty()) return 0;
  const uint64_t h = XXH3_64bits_withSeed(cache_salt.data(), cache_salt.size(), 0x74696572'6c6d7361ull);
  return h != 0 ? h : 1;
}

bool PrefixCache::WorthLoading(BlockTier& tier, int64_t blocks, uint64_t payload_bytes, int64_t tokens,
                               double recompute_tokens_per_s) {
  if (recompute_tokens_per_s <= 0) return true;
  const TierCounters c = tier.Counters();
  const int which = &tier == disk_.get() ? 0 : 1;
  // Measured once a tier has moved a few MiB; the default before.
  const double bw = c.bytes_read >= (4u << 20) && c.load_seconds > 0 ? c.bytes_read / c.load_seconds
                                                                       : kDefaultBandwidth[which];
  const double load_s = kLoadLatencyS + static_cast<double>(blocks) * static_cast<double>(payload_bytes) / bw;
  const double recompute_s = static_cast<double>(tokens) / recompute_tokens_per_s;
  return load_s < recompute_s;
}

Result<PrefixHit> PrefixCache::Attach(kv::PagedKvCache& cache, kv::SeqId seq, std::span<const int32_t> tokens,
                                      uint64_t root, double recompute_tokens_per_s) {
  kv::KvBlockManager& bm = cache.blocks();
  if (bm.HasSequence(seq)) return Status::Internal("prefix: sequence " + std::to_string(seq) + " exists already");
  const int64_t bs = bm.block_size();
  const int64_t n = static_cast<int64_t>(tokens.size());
  const size_t max_blocks = n > 0 ? static_cast<size_t>((n - 1) / bs) : 0;
  const std::vector<uint64_t> hashes = bm.ChainHashes(tokens.first(max_blocks * static_cast<size_t>(bs)), root);
  PrefixHit hit;
  size_t pos = 0;
  if (memory_) {
    pos = static_cast<size_t>(bm.AttachCached(seq, hashes, root));
  } else {
    TIERLM_RETURN_IF_ERROR(bm.Open(seq, root));
  }
  if (!bm.HasSequence(seq)) TIERLM_RETURN_IF_ERROR(bm.Open(seq, root));
  hit.memory_tokens = static_cast<int64_t>(pos) * bs;
  SeqState st;
  const uint64_t identity = bm.identity();
  const uint64_t payload = cache.store().block_payload_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  BlockTier* tiers[2] = {disk_.get(), redis_.get()};
  for (int t = 0; t < 2; ++t) {
    BlockTier* tier = tiers[t];
    if (!tier || hashes.empty()) continue;
    const size_t held = tier->Contains(identity, hashes);
    st.known[t] = held;
    if (held <= pos) continue;
    const int64_t k = static_cast<int64_t>(held - pos);
    if (!WorthLoading(*tier, k, payload, k * bs, recompute_tokens_per_s)) {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.declined_blocks += static_cast<uint64_t>(k);
      continue;
    }
    Result<Admit> room = cache.Reserve(seq, k * bs);
    if (!room.ok() || *room != Admit::kOk) continue;  // no room now: recompute instead
    const std::span<const kv::BlockId> table = bm.BlockTable(seq);
    const size_t base = pos;
    Status append_error;
    const size_t loaded = tier->Load(
        identity, std::span<const uint64_t>(hashes).subspan(pos, static_cast<size_t>(k)), payload,
        [&](size_t i, std::span<const uint8_t> bytes) {
          const size_t index = base + i;
          if (!cache.store().ImportBlock(table[index], bytes.data()).ok()) return false;
          const Status a = bm.Append(seq, tokens.subspan(index * static_cast<size_t>(bs), static_cast<size_t>(bs)));
          if (!a.ok()) {
            append_error = a;
            return false;
          }
          return true;
        });
    TIERLM_RETURN_IF_ERROR(append_error);
    pos += loaded;
    // Reserved blocks that did not load go back.
    TIERLM_RETURN_IF_ERROR(cache.Truncate(seq, static_cast<int64_t>(pos) * bs));
    (t == 0 ? hit.disk_tokens : hit.redis_tokens) += static_cast<int64_t>(loaded) * bs;
  }
  hit.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // Every reused block is now computed (and reusable from memory by the next sequence).
  cache.SetComputed(seq, static_cast<int64_t>(pos) * bs);
  for (int64_t i = 0; i < static_cast<int64_t>(pos); ++i)
    if (bm.BlockHash(bm.BlockTable(seq)[static_cast<size_t>(i)]) != hashes[static_cast<size_t>(i)])
      return Status::Internal("prefix: sequence " + std::to_string(seq) + ": block " + std::to_string(i) +
                              " does not hash to the key it was reused for");
  st.published = 0;
  seqs_[seq] = st;
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.lookups;
  stats_.lookup_tokens += static_cast<uint64_t>(n);
  stats_.memory_tokens += static_cast<uint64_t>(hit.memory_tokens);
  stats_.disk_tokens += static_cast<uint64_t>(hit.disk_tokens);
  stats_.redis_tokens += static_cast<uint64_t>(hit.redis_tokens);
  return hit;
}

void PrefixCache::Publish(kv::PagedKvCache& cache, kv::SeqId seq) {
  if (!disk_ && !redis_) return;
  kv::KvBlockManager& bm = cache.blocks();
  if (!bm.HasSequence(seq)) return;
  SeqState& st = seqs_[seq];
  const int64_t bs = bm.block_size();
  const size_t full = static_cast<size_t>(std::min(cache.Computed(seq), bm.Length(seq)) / bs);
  const std::span<const kv::BlockId> table = bm.BlockTable(seq);
  const uint64_t payload = cache.store().block_payload_bytes();
  BlockTier* tiers[2] = {disk_.get(), redis_.get()};
  uint64_t published = 0, errors = 0;
  for (size_t i = st.published; i < full; ++i) {
    if (table[i] == kv::kHole) break;  // evicted: this and what follows are not exact
    const uint64_t h = bm.BlockHash(table[i]);
    if (h == 0) break;
    const bool want[2] = {tiers[0] && i >= st.known[0], tiers[1] && i >= st.known[1]};
    if (!want[0] && !want[1]) {
      st.published = i + 1;
      continue;
    }
    std::vector<uint8_t> bytes(payload);
    if (!cache.store().ExportBlock(table[i], bytes.data()).ok()) {
      ++errors;
      break;  // a tiered store's I/O error: the next blocks would not chain to a stored one
    }
    if (want[0] && want[1]) {
      tiers[0]->Store(bm.identity(), h, bytes);
      tiers[1]->Store(bm.identity(), h, std::move(bytes));
    } else {
      tiers[want[0] ? 0 : 1]->Store(bm.identity(), h, std::move(bytes));
    }
    published += static_cast<uint64_t>(want[0]) + static_cast<uint64_t>(want[1]);
    st.published = i + 1;
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.published_blocks += published;
  stats_.export_errors += errors;
}

void PrefixCache::Fork(kv::SeqId parent, kv::SeqId child) {
  auto it = seqs_.find(parent);
  if (it != seqs_.end()) seqs_[child] = it->second;
}

void PrefixCache::Forget(kv::SeqId seq) { seqs_.erase(seq); }

void PrefixCache::Flush() {
  if (disk_) disk_->Flush();
  if (redis_) redis_->Flush();
}

PrefixCacheStats PrefixCache::Stats() const {
  PrefixCacheStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
  }
  if (disk_) s.disk = disk_->Counters();
  if (redis_) s.redis = redis_->Counters();
  return s;
}

}  // namespace tierlm::prefix
