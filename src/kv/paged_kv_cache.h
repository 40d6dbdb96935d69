// PagedKvCache: a paged KV cache whole: the block bookkeeping (KvBlockManager), the bytes
// (PagedKvStore), and how far each sequence's keys and values have been computed.
//
// A scheduler reserves room and records a sequence's tokens (Reserve, Append), then
// LlamaModel::Forward(Batch, ...) computes their keys and values at those positions. The
// computed watermark makes the protocol checkable: a batch must continue each sequence
// exactly where its computed positions end.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "kv/kv_block_manager.h"
#include "kv/paged_kv_store.h"

namespace tierlm::kv {

struct PagedKvOptions {
  int64_t n_layer = 0, n_head_kv = 0, head_dim = 0;
  KvFormat format;
  int32_t n_blocks = 0;
  uint64_t identity = 0;  // the model's identity (hashed with the format into block hashes)
  // Set: the bytes live in a tiered store of this memory share, spilling to disk
  // (paged_kv_store.h). Unset (env null): every block in memory.
  KvTierOptions tier;
};

class PagedKvCache {
 public:
  static Result<std::unique_ptr<PagedKvCache>> Create(const PagedKvOptions& options);

  KvBlockManager& blocks() { return blocks_; }
  const KvBlockManager& blocks() const { return blocks_; }
  PagedKvStore& store() { return store_; }
  const KvFormat& format() const { return store_.format(); }

  // Room for n_new more positions of seq (copy-on-write copies are made here). Errors: a
  // copy that failed (a tiered store's I/O), naming the sequence; the room stays reserved.
  Result<Admit> Reserve(SeqId seq, int64_t n_new);
  // Reserve, then Append; ResourceExhausted naming the sequence unless admitted.
  Status AddTokens(SeqId seq, std::span<const int32_t> tokens);
  Status Append(SeqId seq, std::span<const int32_t> tokens) { return blocks_.Append(seq, tokens); }
  Status Fork(SeqId parent, SeqId child);
  Status Truncate(SeqId seq, int64_t length);
  void Free(SeqId seq);
  // Evicts logical block `index` of seq (KvBlockManager::Evict); its bytes are discarded.
  Status Evict(SeqId seq, int64_t index);
  // Hands blocks that left every sequence to the store to discard (done by every call
  // above; public for callers of blocks() directly).
  void DiscardReleased();

  // Positions of seq whose keys and values are in the store.
  int64_t Computed(SeqId seq) const;
  // Also makes the full blocks among them reusable by hash (KvBlockManager::MarkComputed).
  void SetComputed(SeqId seq, int64_t n);

 private:
  PagedKvCache(KvBlockManager blocks, PagedKvStore store) : blocks_(std::move(blocks)), store_(std::move(store)) {}
  KvBlockManager blocks_;
  PagedKvStore store_;
  std::unordered_map<SeqId, int64_t> computed_;
};

// The version of how tierlm computes and lays out KV bytes (RoPE, quantization, the block
// layout): bumped whenever the same tokens of the same model would give other bytes, so that
// a persistent prefix cache never hands old bytes to a new engine.
inline constexpr uint64_t kKvFormatVersion = 3;  // 2: head-major blocks; 3: f16/bf16 keys transposed (PagedKvLayer)

// Identity of a KV format, for block hashes: the model's content identity
// (model/model_identity.h) mixed with the types, the block size and kKvFormatVersion.
uint64_t KvIdentity(uint64_t model_identity, const KvFormat& format);

}  // namespace tierlm::kv
