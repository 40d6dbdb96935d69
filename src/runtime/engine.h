// Engine: a loaded model ready to generate: file, weight store, model, tokenizer, KV
// cache and compute threads, with the options that built them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/progress.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "kv/kv_cache.h"
#include "io/storage_env.h"
#include "model/llama_model.h"
#include "runtime/memory_plan.h"
#include "tiers/weight_store.h"
#include "tokenizer/tokenizer.h"

namespace tierlm {

struct EngineOptions {
  std::string model_path;
  // Compute threads. Default 0: one per core this process may use.
  int32_t n_threads = 0;
  // Context size in tokens. Default 0: the model's training context, at most 4096.
  int64_t n_ctx = 0;
  // Types of the KV cache's keys and values (-ctk / -ctv) and its block size. Default f16
  // both, as llama.cpp; f32 is exact, q8_0 / q4_0 are lossy (their cost: KvTypeAccuracyTest).
  kv::KvFormat kv_format;
  // Sparse KV retrieval for decode steps (--kv-sparse, --kv-budget: kv/block_selector.h).
  // Default exact: every block read.
  kv::KvSparseOptions kv_sparse;
  // Bounded KV (--kv-evict, --kv-max-tokens: kv/kv_evictor.h): the cache is sized for the
  // bound, not the context. Default none: every position kept.
  kv::KvEvictOptions kv_evict;
  // Sequences held at once under that bound (serve's -np): the cache holds this many
  // bounded sequences. Default 1.
  int32_t kv_evict_sequences = 1;
  // Tokens per prefill batch; larger batches reuse weights more but need more scratch.
  int64_t n_batch = 512;
  // Bound on all of the engine's memory (weights, KV cache, scratch, overhead), bytes.
  // Default 0: unlimited; the weights are read into memory once. With a budget, weights
  // that do not fit are streamed from the file (O_DIRECT, io_uring) ahead of use.
  uint64_t mem_budget_bytes = 0;
  // Streamed tensors read ahead of the forward pass under a budget. Default 4.
  int prefetch_depth = 4;
  // Memory for the KV cache (--kv-mem), bytes. Default 0: all of it, unless --mem-budget
  // cannot hold it (memory_plan.h); below the cache's size it is tiered: blocks spill to
  // a private file in kv_spill_dir and are read back ahead of use.
  uint64_t kv_mem_bytes = 0;
  // Where a tiered KV cache's spill file goes (--kv-spill-dir). Default: the model's
  // directory, else /var/tmp, else /tmp. The file has no name and vanishes at exit.
  std::string kv_spill_dir;
  // MoE under a budget: the expert cache's eviction policy ("lru", "lfu-decay", "score")
  // and gate-ahead prefetch of the next layer's predicted experts (on by default when
  // experts stream; off when every weight is in memory, where it only costs a matmul).
  std::string moe_policy = "lfu-decay";
  bool gate_ahead = true;
  // MoE under a budget: what a routed expert whose full copy is not resident is computed
  // with (model/moe_ffn.h). Anything but kExact uses low-bit expert copies from a cache
  // file (tiers/lowbit_expert_cache.h), built on first use (minutes for a 30B model) and
  // rebuilt when stale or corrupt. Default: exact.
  MoeMiss moe_miss = MoeMiss::kExact;
  // Where the low-bit cache lives. Default: beside the model ("<model>.tierlm-lowbit"),
  // else in lowbit_cache_fallback_dir when the model's directory is not writable.
  std::string lowbit_cache_path;
  std::string lowbit_cache_fallback_dir;
  // Progress reporters (core/progress.h), used during Load only: weight bytes read into
  // memory (the whole model, or the pinned set under a budget), and expert slices
  // requantized when the low-bit cache is built. Default: none (Load prints nothing).
  ProgressFn load_progress;
  ProgressFn lowbit_progress;
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Load(const EngineOptions& options);
  // The directory a tiered KV cache spills to by default for a model at model_path.
  static std::string DefaultSpillDir(const std::string& model_path);

  const gguf::GgufFile& file() const { return file_; }
  LlamaModel& model() { return *model_; }
  KvCache& kv() { return kv_; }
  // Where a KV cache made for this engine lives (tiered: its env, directory and share).
  kv::KvTierOptions kv_tier() const { return kv_tier_; }
  ThreadPool& pool() { return *pool_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  WeightStore& weights() { return *store_; }
  // Non-null when the engine runs under a memory budget.
  class TieredWeightStore* tiered() { return tiered_; }
  const MemoryPlan& memory_plan() const { return plan_; }
  // The model file's content identity (model/model_identity.h).
  uint64_t model_identity() const { return model_identity_; }
  // What happened to the low-bit cache at load ("" when not used): opened or built, why.
  const std::string& lowbit_note() const { return lowbit_note_; }
  double load_ms() const { return load_ms_; }

 private:
  Engine() = default;
  gguf::GgufFile file_;
  std::unique_ptr<io::StorageEnv> env_;
  std::unique_ptr<WeightStore> store_;
  class TieredWeightStore* tiered_ = nullptr;
  MemoryPlan plan_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  KvCache kv_;
  kv::KvTierOptions kv_tier_;
  std::unique_ptr<ThreadPool> pool_;
  double load_ms_ = 0;
  uint64_t model_identity_ = 0;
  std::string lowbit_note_;
};

// Peak resident set size of this process so far, in bytes.
uint64_t PeakRssBytes();

}  // namespace tierlm
