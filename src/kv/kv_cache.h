// KvCache: one sequence's keys and values: the single-sequence view of a paged KV cache
// (paged_kv_cache.h), what run, chat, trace and bench use.
//
// It holds n_ctx positions (rounded up to whole blocks) of sequence 0 in the KV types of
// its format (-ctk / -ctv). LlamaModel::Forward(tokens, kv) appends positions; set_n_past
// drops the ones past n (a new prompt, a rewritten chat history).
#pragma once

#include <cstdint>
#include <memory>

#include "core/status.h"
#include "kv/paged_kv_cache.h"

namespace tierlm {

struct KvShape {
  int64_t n_layer = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
};

class KvCache {
 public:
  // The largest cache Create allocates; a context that needs more is refused up front.
  static constexpr uint64_t kMaxBytes = 64ull << 30;
  static constexpr kv::SeqId kSeq = 0;
  // Keys and values of n_ctx positions in bytes, in the format's types and whole blocks
  // (a double: huge -c values do not overflow).
  static double Bytes(const KvShape& shape, int64_t n_ctx, const kv::KvFormat& format);
  // ResourceExhausted naming the size and the context when Bytes() is above kMaxBytes.
  static Status CheckSize(const KvShape& shape, int64_t n_ctx, const kv::KvFormat& format);
  // Default format: f32 keys and values (exact; the engine's default is f16, as llama.cpp).
  // A tier (tier.env set) makes the cache tiered: tier.budget_bytes in memory, the rest
  // spilled to disk (paged_kv_store.h). model_identity: the model's content identity
  // (model/model_identity.h), folded into every block hash.
  // kv_positions > 0 sizes the cache for that many positions (whole blocks) instead of
  // n_ctx: a sequence under an eviction bound (kv_evictor.h) spans n_ctx positions but
  // holds fewer.
  static Result<KvCache> Create(const KvShape& shape, int64_t n_ctx,
                                const kv::KvFormat& format = {GgmlType::kF32, GgmlType::kF32, 16},
                                const kv::KvTierOptions& tier = {}, uint64_t model_identity = 0,
                                int64_t kv_positions = 0);

  int64_t n_ctx() const { return n_ctx_; }
  // Positions filled so far; the next token goes at position n_past().
  int64_t n_past() const { return paged_->Computed(kSeq); }
  // Keeps positions [0, n) (n <= n_past()); fewer when the block holding position n - 1
  // was evicted (kv_evictor.h): then from that block's start (read n_past() after).
  void set_n_past(int64_t n);
  uint64_t bytes() const { return paged_->store().bytes(); }
  const kv::KvFormat& format() const { return paged_->format(); }
  kv::PagedKvCache& paged() { return *paged_; }

 private:
  int64_t n_ctx_ = 0;
  std::unique_ptr<kv::PagedKvCache> paged_;
};

}  // namespace tierlm
