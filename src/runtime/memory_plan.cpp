#include "runtime/memory_plan.h"

#include <algorithm>

#include "kv/kv_cache.h"

namespace tierlm {

uint64_t DecodeWeightBytesPerToken(const gguf::GgufFile& file) {
  const bool tied = file.FindTensor("output.weight") == nullptr;
  // MoE: a token runs n_used of each layer's n_expert experts.
  auto hp = ModelHParams::FromGguf(file);
  const uint64_t n_expert = hp.ok() ? static_cast<uint64_t>(hp->n_expert) : 0;
  const uint64_t n_used = hp.ok() ? static_cast<uint64_t>(hp->n_expert_used) : 0;
  uint64_t bytes = 0;
  for (const auto& t : file.tensors()) {
    if (t.name == "token_embd.weight" && !tied) continue;
    const bool stacked = t.n_dims == 3 && t.name.find("_exps.") != std::string::npos;
    bytes += stacked && n_expert > 0 ? t.size_bytes / n_expert * n_used : t.size_bytes;
  }
  return bytes;
}

uint64_t ScratchBytes(const ModelHParams& hp, int64_t n_ctx, int64_t n_batch, int n_threads) {
  const uint64_t E = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim();
  const uint64_t F = static_cast<uint64_t>(std::max({hp.n_ff, hp.n_ff_exp, hp.n_ff_shexp}));
  const uint64_t n = static_cast<uint64_t>(n_batch);
  const uint64_t max_in = std::max({E, Q, F});
  uint64_t floats = n * (2 * E + 2 * std::max(Q, E) + 2 * KV + 2 * F);  // activations
  floats += n * max_in;                                                  // matmul activation copies
  floats += static_cast<uint64_t>(n_ctx + hp.head_dim) * (n_threads + 1);  // attention rows
  floats += static_cast<uint64_t>(hp.n_vocab) * 2;                       // logits, sampler
  if (hp.n_expert > 0) floats += n * (hp.n_expert + 2 * E + 2 * F);      // router, expert gathers
  return floats * sizeof(float);
}

std::string MemoryPlan::ToString() const {
  if (budget_bytes == 0)
    return "memory: unlimited budget: weights " + FormatBytes(placement.total_bytes) + " in memory, KV cache " +
           FormatBytes(kv_bytes) + (kv_summary_bytes ? ", KV block summaries " + FormatBytes(kv_summary_bytes) : "") +
           ", scratch " + FormatBytes(scratch_bytes);
  const std::string kv = kv_tiered ? "KV cache " + FormatBytes(kv_memory_bytes) + " in memory of " +
                                         FormatBytes(kv_spill_bytes) + " (the rest spills to disk)"
                                   : "KV cache " + FormatBytes(kv_bytes);
  const std::string summaries =
      kv_summary_bytes ? ", KV block summaries " + FormatBytes(kv_summary_bytes) : std::string();
  return "memory budget " + FormatBytes(budget_bytes) + ": weights " + FormatBytes(weight_budget_bytes) + " (pinned " +
         FormatBytes(placement.pinned_bytes) + ", streaming ring " + FormatBytes(placement.ring_bytes) + "), " + kv +
         summaries + ", scratch " + FormatBytes(scratch_bytes) + ", overhead " + FormatBytes(overhead_bytes) +
         "; smallest workable budget " + FormatBytes(min_budget_bytes);
}

Result<MemoryPlan> PlanMemory(const gguf::GgufFile& file, const ModelHParams& hp, int64_t n_ctx, int64_t n_batch,
                              int n_threads, uint64_t budget_bytes, const kv::KvFormat& kv_format,
                              uint64_t kv_memory_bytes, int64_t kv_positions, bool kv_summaries, bool kv_sums) {
  if (n_ctx <= 0) return Status::InvalidArgument("context size (-c) must be positive");
  if (n_batch <= 0) return Status::InvalidArgument("batch size (-b) must be positive");
  // Before any product of n_ctx: a huge -c must not overflow the sizes below.
  const KvShape shape{hp.n_layer, hp.n_head_kv, hp.head_dim};
  // A KV bound (--kv-max-tokens) sizes the cache below the context.
  const int64_t kv_pos = kv_positions > 0 ? std::min(kv_positions, n_ctx) : n_ctx;
  TIERLM_RETURN_IF_ERROR(KvCache::CheckSize(shape, kv_pos, kv_format));
  MemoryPlan mp;
  mp.budget_bytes = budget_bytes;
  mp.kv_bytes = static_cast<uint64_t>(KvCache::Bytes(shape, kv_pos, kv_format));
  mp.scratch_bytes = ScratchBytes(hp, n_ctx, std::min(n_batch, n_ctx), n_threads);
  // Parsed metadata and the tokenizer take a few times the header's bytes; code and
  // thread stacks a few MiB.
  mp.overhead_bytes = 4 * file.data_offset() + (8ull << 20);

  // A tiered cache: every (layer, block) in its own 4 KiB-aligned slot; it needs one layer's
  // blocks of the whole context pinned, and room to read the next layer's ahead.
  const uint64_t n_blocks = static_cast<uint64_t>((kv_pos + kv_format.block_size - 1) / kv_format.block_size);
  const uint64_t slot = kv::PagedKvStore::TieredSlotBytes(hp.n_head_kv, hp.head_dim, kv_format);
  mp.kv_spill_bytes = n_blocks * slot * static_cast<uint64_t>(hp.n_layer);
  mp.kv_min_tiered_bytes = std::min(2 * n_blocks * slot, mp.kv_spill_bytes);
  mp.kv_memory_bytes = mp.kv_bytes;
  if (kv_summaries)
    mp.kv_summary_bytes = n_blocks * static_cast<uint64_t>(hp.n_layer) * static_cast<uint64_t>(hp.n_head_kv) *
                          static_cast<uint64_t>(hp.head_dim) *
                          (2 * sizeof(uint16_t) + (kv_sums ? 2 * sizeof(float) : 0));

  // The whole model's placement, to learn the smallest weight budget.
  uint64_t total = 0;
  for (const auto& t : file.tensors()) total += t.size_bytes + 8192;
  PlacementOptions all;
  all.budget_bytes = total;
  TIERLM_ASSIGN_OR_RETURN(WeightPlacement full, PlanWeightPlacement(file, all));
  const uint64_t others = mp.scratch_bytes + mp.overhead_bytes + mp.kv_summary_bytes;
  if (kv_memory_bytes > 0 && kv_memory_bytes < mp.kv_bytes) {
    if (kv_memory_bytes < mp.kv_min_tiered_bytes)
      return Status::OutOfRange("--kv-mem " + FormatBytes(kv_memory_bytes) + " is too small: a KV cache of -c " +
                                std::to_string(n_ctx) + " needs at least " + FormatBytes(mp.kv_min_tiered_bytes) +
                                " in memory (two layers' blocks of the whole context)");
    mp.kv_tiered = true;
    mp.kv_memory_bytes = kv_memory_bytes;
  }
  const uint64_t kv_least = mp.kv_tiered ? mp.kv_memory_bytes : std::min(mp.kv_bytes, mp.kv_min_tiered_bytes);
  mp.min_budget_bytes = full.min_budget_bytes + kv_least + others;
  if (budget_bytes == 0) {
    mp.placement = std::move(full);
    mp.weight_budget_bytes = mp.placement.total_bytes;
    return mp;
  }
  if (budget_bytes < mp.min_budget_bytes)
    return Status::OutOfRange("--mem-budget " + FormatBytes(budget_bytes) + " is too small for " + file.name() +
                              ": the smallest budget that runs it is " + FormatBytes(mp.min_budget_bytes) + " (" +
                              FormatBytes(full.min_budget_bytes) + " of weights: always-resident tensors plus two " +
                              "buffers of the largest streamed one; KV cache " + FormatBytes(kv_least) +
                              " in memory for -c " + std::to_string(n_ctx) + (kv_least < mp.kv_bytes ? " (the rest spills to disk)" : "") +
                              (mp.kv_summary_bytes ? "; KV block summaries " + FormatBytes(mp.kv_summary_bytes) : std::string()) +
                              "; scratch " + FormatBytes(mp.scratch_bytes) +
                              "; overhead " + FormatBytes(mp.overhead_bytes) + "). A smaller -c shrinks the KV cache.");
  if (!mp.kv_tiered && budget_bytes < full.min_budget_bytes + mp.kv_bytes + others) {
    // The whole cache does not fit beside the weights' working set: it spills. It gets what
    // the weights leave when all of them are resident, and at least its minimum.
    mp.kv_tiered = true;
    const uint64_t left = budget_bytes - others;
    mp.kv_memory_bytes = std::max(mp.kv_min_tiered_bytes,
                                  left > full.total_bytes ? left - full.total_bytes : uint64_t{0});
  }
  const uint64_t fixed = mp.kv_memory_bytes + others;
  mp.weight_budget_bytes = budget_bytes - fixed;
  PlacementOptions po;
  po.budget_bytes = mp.weight_budget_bytes;
  TIERLM_ASSIGN_OR_RETURN(mp.placement, PlanWeightPlacement(file, po));
  return mp;
}

}  // namespace tierlm
