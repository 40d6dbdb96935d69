// Sparse KV retrieval: which blocks of a sequence a decode step's query reads.
//
// A BlockSelector looks at one query row (all heads, RoPE applied) and the sequence's block
// table and marks, per block and KV head, the blocks attention skips. Every mode always
// keeps the attention sinks (the first sink_blocks blocks) and the recent window (the last
// recent_blocks blocks, the one being written among them), and reads at most
// budget_tokens positions per KV head in all; a context that fits the budget is read
// whole, so every mode is exact (bit-identical to no selection) there.
//
// Only decode rows are sparse (a sequence with one token in the forward): a prompt is
// prefilled exactly. Layers below dense_layers are always exact.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "core/thread_pool.h"
#include <string>

#include "core/status.h"
#include "kv/kv_block_manager.h"
#include "kv/kv_block_summaries.h"

namespace tierlm::kv {

enum class KvSparseMode { kExact, kQuest, kStreaming };

struct KvSparseOptions {
  KvSparseMode mode = KvSparseMode::kExact;
  int64_t budget_tokens = 2048;  // per step and KV head, sinks and recent window included
  int32_t sink_blocks = 1;
  int32_t recent_blocks = 2;
  int32_t dense_layers = 0;
  // One selection for all KV heads (a block's score: its best over every query head)
  // instead of one per KV head. A block holds every head, so this is what a tiered cache
  // reads least with: exactly the budget's blocks per layer, not the union of the heads'.
  bool shared_heads = false;
  // Skipped blocks count as their mean key and value (PagedQuery::mean_skipped), from
  // per-block sums kept in memory beside the key bounds (2 * head_dim more floats per block
  // and KV head), instead of adding nothing.
  bool mean_skipped = false;
};

// "exact", "quest", "streaming".
Result<KvSparseMode> ParseKvSparseMode(const std::string& name);
const char* KvSparseModeName(KvSparseMode mode);
// InvalidArgument naming the flag: a budget that cannot hold the sinks and the window.
Status CheckKvSparse(const KvSparseOptions& options, int32_t block_size);

// The query of one decode row in one layer.
struct SelectionQuery {
  int64_t layer = 0;
  const float* q = nullptr;  // n_head * head_dim, RoPE applied
  int64_t n_head = 0;
  std::span<const BlockId> table;  // the sequence's blocks covering its n_keys positions
  int64_t n_keys = 0;
  ThreadPool* pool = nullptr;      // scoring may spread over it (null: the calling thread)
};

class BlockSelector {
 public:
  virtual ~BlockSelector() = default;
  // Fills skip[b * n_head_kv + g] (b < table.size()) with 1 for the blocks KV head g
  // skips, 0 for those it reads. Returns false, leaving skip alone, when every block is read.
  virtual bool Select(const SelectionQuery& query, uint8_t* skip) = 0;
};

// The selector of options.mode (null for kExact). `summaries` must outlive it.
std::unique_ptr<BlockSelector> MakeBlockSelector(const KvSparseOptions& options, int32_t block_size,
                                                 const KvBlockSummaries* summaries);

}  // namespace tierlm::kv
