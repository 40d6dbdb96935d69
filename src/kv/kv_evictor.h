// KvEvictor: bounded KV per sequence (--kv-evict, --kv-max-tokens): it shows each
// sequence's policy (eviction_policy.h) what the forward passes saw, and evicts the blocks
// the policy picks until the sequence's live blocks hold at most max_tokens positions.
//
// LlamaModel::Forward drives it: after computing a batch, it reports the attention per
// block of each sequence's last `window` rows (policies that want it; every decode step) or each token's surprisal (those that want logits),
// then calls Enforce for each sequence of the batch. Evicted blocks go back to the cache's
// free list at once (kv_block_manager.h), for this sequence's next tokens or another's.
// A sequence's state follows it: observing a position before the last one seen (the cache
// was cut back, or the sequence ended and its id came back) truncates it; Prune drops
// sequences the cache no longer has.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "kv/eviction_policy.h"
#include "kv/paged_kv_cache.h"

namespace tierlm::kv {

class KvEvictor {
 public:
  KvEvictor(const KvEvictOptions& options, int32_t block_size);

  const KvEvictOptions& options() const { return options_; }
  int32_t block_size() const { return block_size_; }
  bool wants_attention() const { return wants_attention_; }
  bool wants_surprisal() const { return wants_surprisal_; }

  // The query at position pos of seq put mass[i] of its attention on logical block i
  // (sums to 1 over the blocks it read).
  void ObserveAttention(SeqId seq, int64_t pos, std::span<const float> mass);
  // The logits of position pos of seq (they predict pos + 1), whose token is `token`: the
  // surprisal of `token` comes from the logits of pos - 1, kept from the last call.
  void ObserveLogits(SeqId seq, int64_t pos, int32_t token, std::span<const float> logits);

  // Evicts blocks of seq, the policy's pick each time, until its live blocks hold at most
  // max_tokens positions or only the sinks, the window and blocks not yet computed are
  // left. Returns how many it evicted.
  Result<int64_t> Enforce(PagedKvCache& cache, SeqId seq);
  // Forgets the sequences `blocks` no longer has.
  void Prune(const KvBlockManager& blocks);

  uint64_t evicted_blocks() const { return evicted_; }

 private:
  struct SeqState {
    std::unique_ptr<EvictionPolicy> policy;
    int64_t next = 0;  // the position after the last observed
    std::vector<float> prev_logits;  // of position next - 1 (ObserveLogits)
    bool has_prev = false;
  };
  SeqState& State(SeqId seq, int64_t pos);

  KvEvictOptions options_;
  int32_t block_size_;
  bool wants_attention_ = false, wants_surprisal_ = false;
  std::unordered_map<SeqId, SeqState> seqs_;
  uint64_t evicted_ = 0;
};

}  // namespace tierlm::kv
