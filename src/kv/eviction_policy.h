// KV eviction: a bound on the KV a sequence keeps, old blocks dropped for good.
//
// Retrieval (block_selector.h) keeps every block and reads few; eviction keeps few, so a
// sequence of any length fits a fixed budget (an endless chat, a stream), at the price of
// what it drops. Eviction is block-granular: a whole block (every layer and head of
// block_size positions) leaves at once and returns to the cache's free list; the positions
// after it keep their places, so RoPE stays at the original positions and attention skips
// the hole (kv_block_manager.h).
//
// Every policy keeps the attention sinks (the first sink_blocks blocks) and the recent
// window (the last recent_blocks full blocks, and the block being filled). The evictor
// (kv_evictor.h) asks a policy which of the other blocks goes, one at a time, until the
// sequence holds at most max_tokens positions' blocks. Policies differ in what they observe:
//   streaming  nothing: the oldest goes (StreamingLLM: sinks plus a window);
//   h2o        each query's attention, summed over all queries (H2O's heavy hitters);
//   snapkv     attention of the last `window` queries only (SnapKV's observation window);
//   sirllm     each token's surprisal under the model, -log p (SirLLM's token entropy);
//   lazy       when each block was last attended above its fair share, and the longest gap
//              between two such times (LazyEviction's recurrence interval): a block idle for
//              less than its gap is expected back and kept;
//   retention  attention with an exponential decay per query (TRIM-KV's retention decay,
//              the per-token rate estimated from attention instead of a trained gate).
// Ties go to the oldest block.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"

namespace tierlm::kv {

enum class KvEvictMode { kNone, kStreaming, kH2o, kSnapKv, kSirLlm, kLazy, kRetention };

struct KvEvictOptions {
  KvEvictMode mode = KvEvictMode::kNone;
  int64_t max_tokens = 0;  // positions a sequence's live blocks may hold (whole blocks)
  int32_t sink_blocks = 1;
  int32_t recent_blocks = 2;
  // Queries observed: of a forward's rows of one sequence (a prompt chunk), the last
  // `window` (every decode step is one); snapkv also scores by the last `window` only.
  int32_t window = 32;
  double decay = 0.99;     // retention: factor per query
  // Prompt tokens per forward under eviction: the KV a prompt needs at once is bounded by
  // max_tokens plus one chunk.
  int64_t prefill_chunk = 256;
};

// "none", "streaming", "h2o", "snapkv", "sirllm", "lazy", "retention".
Result<KvEvictMode> ParseKvEvictMode(const std::string& name);
const char* KvEvictModeName(KvEvictMode mode);
// InvalidArgument naming the flag: a bound that cannot hold the sinks, the window and the
// block being filled; a window, decay or chunk out of range.
Status CheckKvEvict(const KvEvictOptions& options, int32_t block_size);

// One sequence's policy state. Observations come in position order; after a truncation
// the evictor calls Truncate, then observes the new positions.
class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual bool wants_attention() const { return false; }
  virtual bool wants_surprisal() const { return false; }
  // The query at position pos attended: mass[i] is the share of its attention on logical
  // block i of the sequence (holes 0), averaged over layers and query heads: it sums to 1.
  virtual void ObserveAttention(int64_t pos, std::span<const float> mass) { (void)pos, (void)mass; }
  // The token at position pos had surprisal -log p (nats) given the positions before it.
  virtual void ObserveSurprisal(int64_t pos, float nats) { (void)pos, (void)nats; }
  // Of `candidates` (logical block indices, ascending, at least one: live full blocks
  // outside the sinks and the window), the block to evict now.
  virtual int64_t Victim(std::span<const int64_t> candidates) = 0;
  // Positions from `length` on are gone: their observations are dropped.
  virtual void Truncate(int64_t length) = 0;
};

// Positions a cache of one sequence under this bound needs at most: max_tokens, one
// prefill chunk on top before eviction (LlamaModel::Forward(tokens, kv) cuts prompts into
// them), and the block being filled. 0 for kNone.
int64_t KvPositionsFor(const KvEvictOptions& options, int32_t block_size);

// The policy of options.mode (null for kNone).
std::unique_ptr<EvictionPolicy> MakeEvictionPolicy(const KvEvictOptions& options, int32_t block_size);

}  // namespace tierlm::kv
