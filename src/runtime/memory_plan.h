// MemoryPlan: how a --mem-budget is split between weights, KV cache, scratch and the
// engine's fixed overhead, and where every weight byte lives under it.
#pragma once

#include <cstdint>
#include <string>

#include "core/format_bytes.h"
#include "core/status.h"
#include "kv/paged_kv_store.h"
#include "format/gguf_file.h"
#include "model/hparams.h"
#include "tiers/weight_placement.h"

namespace tierlm {

// Under a budget the KV cache stays whole in memory while the budget can hold it beside the
// smallest weight working set (as before tiering existed); past that it is tiered: it gets
// what the weights leave (all of them resident), at least two layers' blocks of the whole
// context, and its coldest blocks spill to a private file on disk.
struct MemoryPlan {
  uint64_t budget_bytes = 0;    // 0: unlimited (the whole model in memory)
  uint64_t kv_bytes = 0;        // KV cache for n_ctx positions, or the bound's (all in memory)
  bool kv_tiered = false;       // the KV cache spills to disk
  uint64_t kv_memory_bytes = 0; // memory for KV: kv_bytes, or a tiered cache's share
  uint64_t kv_spill_bytes = 0;  // a tiered cache's file: every block at 4 KiB pages
  uint64_t kv_min_tiered_bytes = 0;  // the smallest share a tiered cache runs with
  uint64_t kv_summary_bytes = 0;  // --kv-sparse: every block's key bounds (and sums), always in memory
  uint64_t scratch_bytes = 0;   // activations for one batch, logits, kernel buffers
  uint64_t overhead_bytes = 0;  // parsed metadata, tokenizer, code
  uint64_t weight_budget_bytes = 0;  // what is left for weights
  uint64_t min_budget_bytes = 0;     // the smallest --mem-budget that runs this model
  WeightPlacement placement;         // valid when budget_bytes > 0
  std::string ToString() const;
};

// Weight bytes one decode step reads: every tensor except the embedding table (of which
// it reads one row), unless the table doubles as the classifier (no output.weight); of
// stacked MoE experts, the n_used / n_expert share a token runs.
uint64_t DecodeWeightBytesPerToken(const gguf::GgufFile& file);

// Scratch memory one forward pass of up to n_batch tokens needs, with n_ctx positions.
uint64_t ScratchBytes(const ModelHParams& hp, int64_t n_ctx, int64_t n_batch, int n_threads);

// Splits `budget_bytes` (0: unlimited). kOutOfRange, naming the smallest workable budget
// and what it consists of, when the budget cannot run the model. kv_memory_bytes > 0 sets
// the KV cache's memory share by hand (tiered when below the cache's size). kv_positions
// > 0: the cache holds that many positions' blocks, not n_ctx (a bound on the KV a
// sequence keeps: KvPositionsFor). kv_summaries: sparse retrieval keeps every block's key
// bounds in memory (2 * head_dim halves per layer, block and KV head; kv_sums: 2 * head_dim
// floats more, for --kv-skipped mean), whichever tier the block is on; they come out of the budget.
Result<MemoryPlan> PlanMemory(const gguf::GgufFile& file, const ModelHParams& hp, int64_t n_ctx, int64_t n_batch,
                              int n_threads, uint64_t budget_bytes,
                              const kv::KvFormat& kv_format = {}, uint64_t kv_memory_bytes = 0,
                              int64_t kv_positions = 0, bool kv_summaries = false, bool kv_sums = false);

}  // namespace tierlm
