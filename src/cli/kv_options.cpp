#include "cli/kv_options.h"

namespace tierlm::cli {

void AddKvTypeOptions(ArgParser& ap, KvTypeFlags* flags) {
  ap.Add({"-ctk", "--cache-type-k"}, &flags->k, "KV cache key type: f32, f16, bf16, q8_0, q4_0 (default f16)");
  ap.Add({"-ctv", "--cache-type-v"}, &flags->v, "KV cache value type: f32, f16, bf16, q8_0, q4_0 (default f16)");
  ap.Add({"--kv-block"}, &flags->block, "positions per KV cache block, 1 to 1024 (default 16)");
  ap.Add({"--kv-mem"}, &flags->mem,
         "memory for the KV cache, e.g. 2G; the coldest blocks beyond it spill to disk (default: all of it, "
         "unless --mem-budget cannot hold it)");
  ap.Add({"--kv-spill-dir"}, &flags->spill_dir,
         "directory of the KV spill file, a private file removed at exit (default: the model's directory)");
  ap.Add({"--kv-sparse"}, &flags->sparse,
         "sparse KV retrieval for decode steps: exact (default: every block read), quest (per-block key bounds "
         "pick the blocks each KV head reads; lossy) or streaming (the sinks and the most recent blocks only: "
         "StreamingLLM's window; lossy)");
  ap.Add({"--kv-budget"}, &flags->budget,
         "--kv-sparse: positions each KV head reads per decode step, sinks and recent window included (default 2048)");
  ap.Add({"--kv-sink-blocks"}, &flags->sinks, "--kv-sparse, --kv-evict: first blocks always kept (default 1)");
  ap.Add({"--kv-recent-blocks"}, &flags->recent, "--kv-sparse, --kv-evict: last blocks always kept (default 2)");
  ap.Add({"--kv-dense-layers"}, &flags->dense_layers, "--kv-sparse: first layers read exactly (default 0)");
  ap.Add({"--kv-select-heads"}, &flags->select_heads,
         "--kv-sparse quest: each (every KV head picks its own blocks; default) or shared (one pick for all heads: "
         "a spilled cache reads only the budget's blocks)");
  ap.Add({"--kv-skipped"}, &flags->skipped,
         "--kv-sparse: what the blocks a step skips add: drop (nothing; default) or mean (each counts as one key, "
         "its mean key and value weighted by its size, from sums kept in memory: 2 head_dim floats per block, "
         "layer and KV head)");
  ap.Add({"--kv-evict"}, &flags->evict,
         "bounded KV per sequence, old blocks dropped for good (lossy; needs --kv-max-tokens): none (default), "
         "streaming (oldest first), h2o (least attended so far), snapkv (least attended by the last "
         "--kv-evict-window queries), sirllm (least surprising tokens), lazy (overstayed its attention recurrence "
         "interval), retention (attention decayed by --kv-evict-decay per query)");
  ap.Add({"--kv-max-tokens"}, &flags->max_tokens,
         "--kv-evict: positions of KV each sequence keeps (whole blocks; the cache is sized for it, not -c)");
  ap.Add({"--kv-evict-window"}, &flags->evict_window, "--kv-evict snapkv: queries observed (default 32)");
  ap.Add({"--kv-evict-decay"}, &flags->evict_decay, "--kv-evict retention: decay per query, (0, 1] (default 0.99)");
}

Status ApplyKvEvict(const KvTypeFlags& flags, kv::KvEvictOptions* evict) {
  TIERLM_ASSIGN_OR_RETURN(evict->mode, kv::ParseKvEvictMode(flags.evict));
  if (evict->mode == kv::KvEvictMode::kNone) {
    if (flags.max_tokens != 0) return Status::InvalidArgument("--kv-max-tokens needs --kv-evict (a policy to evict by)");
    return Status::Ok();
  }
  if (flags.max_tokens <= 0)
    return Status::InvalidArgument("--kv-evict " + flags.evict + " needs --kv-max-tokens (the positions to keep)");
  if (flags.sparse != "exact") return Status::InvalidArgument("--kv-evict and --kv-sparse do not combine: choose one");
  evict->max_tokens = flags.max_tokens;
  evict->sink_blocks = flags.sinks;
  evict->recent_blocks = flags.recent;
  evict->window = flags.evict_window;
  evict->decay = flags.evict_decay;
  return kv::CheckKvEvict(*evict, flags.block);
}

Status ApplyKvSparse(const KvTypeFlags& flags, kv::KvSparseOptions* sparse) {
  TIERLM_ASSIGN_OR_RETURN(sparse->mode, kv::ParseKvSparseMode(flags.sparse));
  sparse->budget_tokens = flags.budget;
  sparse->sink_blocks = flags.sinks;
  sparse->recent_blocks = flags.recent;
  sparse->dense_layers = flags.dense_layers;
  if (flags.select_heads != "each" && flags.select_heads != "shared")
    return Status::InvalidArgument("--kv-select-heads: '" + flags.select_heads + "' is not each or shared");
  sparse->shared_heads = flags.select_heads == "shared";
  if (flags.skipped != "drop" && flags.skipped != "mean")
    return Status::InvalidArgument("--kv-skipped: '" + flags.skipped + "' is not drop or mean");
  sparse->mean_skipped = flags.skipped == "mean";
  return kv::CheckKvSparse(*sparse, flags.block);
}

Status ApplyKvTypes(const KvTypeFlags& flags, kv::KvFormat* format, uint64_t* kv_mem_bytes) {
  if (kv_mem_bytes) {
    *kv_mem_bytes = 0;
    if (!flags.mem.empty()) {
      auto b = ParseByteSize(flags.mem);
      if (!b.ok()) return b.status().WithContext("--kv-mem");
      if (*b == 0) return Status::InvalidArgument("--kv-mem must be positive");
      *kv_mem_bytes = *b;
    }
  }
  auto k = kv::ParseKvType(flags.k);
  if (!k.ok()) return Status::InvalidArgument("-ctk: " + k.status().message());
  auto v = kv::ParseKvType(flags.v);
  if (!v.ok()) return Status::InvalidArgument("-ctv: " + v.status().message());
  if (flags.block < 1 || flags.block > 1024)
    return Status::InvalidArgument("--kv-block " + std::to_string(flags.block) + ": must be in [1, 1024]");
  format->k_type = *k;
  format->v_type = *v;
  format->block_size = flags.block;
  return Status::Ok();
}

}  // namespace tierlm::cli
