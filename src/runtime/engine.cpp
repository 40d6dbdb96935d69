#include "runtime/engine.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "io/posix_storage_env.h"
#include "model/model_identity.h"
#include "tiers/lowbit_expert_cache.h"
#include "tiers/policy_factory.h"
#include "tiers/tiered_weight_store.h"

namespace tierlm {

uint64_t PeakRssBytes() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

std::string Engine::DefaultSpillDir(const std::string& model_path) {
  const size_t slash = model_path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : model_path.substr(0, slash));
  for (const std::string& d : {dir, std::string("/var/tmp"), std::string("/tmp")})
    if (::access(d.c_str(), W_OK | X_OK) == 0) return d;
  return dir;
}

Result<std::unique_ptr<Engine>> Engine::Load(const EngineOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> e(new Engine());
  if (o.n_ctx < 0) return Status::InvalidArgument("context size (-c) must not be negative (0: the model's)");
  if (o.n_batch <= 0) return Status::InvalidArgument("batch size (-b) must be positive");
  if (o.prefetch_depth < 0) return Status::InvalidArgument("--prefetch must not be negative (0: no read-ahead)");
  TIERLM_ASSIGN_OR_RETURN(const int n_threads, ResolveThreadCount(o.n_threads));
  TIERLM_RETURN_IF_ERROR(MakeEvictionPolicy(o.moe_policy, 1, [](EntryId) { return 0; }).status());
  TIERLM_ASSIGN_OR_RETURN(e->file_, gguf::GgufFile::Open(o.model_path));
  // Check the model before reading gigabytes of weights.
  TIERLM_RETURN_IF_ERROR(LlamaModel::Create(e->file_, nullptr).status());
  TIERLM_ASSIGN_OR_RETURN(auto tok, tokenizer::Tokenizer::FromGguf(e->file_));
  e->tokenizer_ = std::make_unique<tokenizer::Tokenizer>(std::move(tok));
  TIERLM_ASSIGN_OR_RETURN(ModelHParams hp, ModelHParams::FromGguf(e->file_));
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
  // KV types the head size cannot take are refused before any weight is read.
  TIERLM_RETURN_IF_ERROR(kv::CheckKvType(o.kv_format.k_type, hp.head_dim, "-ctk"));
  TIERLM_RETURN_IF_ERROR(kv::CheckKvType(o.kv_format.v_type, hp.head_dim, "-ctv"));
  // A batch never holds more tokens than the context (llama.cpp clamps the same way).
  const int64_t n_batch = std::min(o.n_batch, n_ctx);
  TIERLM_RETURN_IF_ERROR(kv::CheckKvEvict(o.kv_evict, o.kv_format.block_size));
  if (o.kv_evict.mode != kv::KvEvictMode::kNone && o.kv_sparse.mode != kv::KvSparseMode::kExact)
    return Status::InvalidArgument("--kv-evict and --kv-sparse do not combine: choose one");
  const int64_t kv_positions =
      kv::KvPositionsFor(o.kv_evict, o.kv_format.block_size) * std::max<int64_t>(1, o.kv_evict_sequences);
  TIERLM_ASSIGN_OR_RETURN(e->plan_, PlanMemory(e->file_, hp, n_ctx, n_batch, n_threads, o.mem_budget_bytes,
                                                     o.kv_format, o.kv_mem_bytes, kv_positions,
                                                     o.kv_sparse.mode != kv::KvSparseMode::kExact,
                                                     o.kv_sparse.mean_skipped));
  // A budget that holds every weight needs no streaming: the in-memory store holds exactly
  // the weights (within the weight budget) and skips the residency bookkeeping.
  // lowbit-all computes every expert from its copy, which only the tiered store holds.
  const bool lowbit_all = o.moe_miss == MoeMiss::kLowbitAll && hp.n_expert > 0;
  if (lowbit_all && o.mem_budget_bytes == 0)
    return Status::InvalidArgument("--moe-miss lowbit-all needs --mem-budget (the low-bit copies live under the budget)");
  if (e->plan_.kv_tiered || o.mem_budget_bytes > 0) e->env_ = std::make_unique<io::PosixStorageEnv>(io::PosixEnvOptions{});
  if (o.mem_budget_bytes == 0 || (e->plan_.placement.n_streamed == 0 && !lowbit_all)) {
    TIERLM_ASSIGN_OR_RETURN(e->store_, InMemoryWeightStore::Open(e->file_, o.load_progress));
  } else {
    TieredWeightStoreOptions to;
    to.budget_bytes = e->plan_.weight_budget_bytes;
    to.prefetch_depth = o.prefetch_depth;
    to.expert_policy = o.moe_policy;
    to.progress = o.load_progress;
    TIERLM_ASSIGN_OR_RETURN(auto tiered, TieredWeightStore::Open(e->file_, e->env_.get(), to));
    e->tiered_ = tiered.get();
    e->store_ = std::move(tiered);
  }
  TIERLM_ASSIGN_OR_RETURN(e->pool_, ThreadPool::Create(n_threads));
  if (o.moe_miss != MoeMiss::kExact && hp.n_expert > 0) {
    if (!e->tiered_) {
      e->lowbit_note_ = "every expert fits the budget: --moe-miss " + std::string(MoeMissName(o.moe_miss)) +
                        " has nothing to do";
    } else {
      LowbitExpertCache::OpenOrBuildOptions lo;
      lo.path = o.lowbit_cache_path;
      lo.fallback_dir = o.lowbit_cache_fallback_dir;
      lo.build.progress = o.lowbit_progress;
      TIERLM_ASSIGN_OR_RETURN(auto r, LowbitExpertCache::OpenOrBuild(e->env_.get(), e->file_, o.model_path,
                                                                    e->pool_.get(), lo));
      e->lowbit_note_ = (r.built ? "built low-bit expert cache " : "opened low-bit expert cache ") + r.cache->path();
      if (r.built) {
        char buf[160];
        std::snprintf(buf, sizeof buf, " (%s; %lld experts slices, %.1f MiB, %.1f s)", r.reason.c_str(),
                      static_cast<long long>(r.stats.entries), r.stats.cache_bytes / 1048576.0, r.stats.seconds);
        e->lowbit_note_ += buf;
      }
      if (!r.stats.skipped_tensors.empty())
        e->lowbit_note_ += "; no copies for " + std::to_string(r.stats.skipped_tensors.size()) +
                           " expert tensors whose rows the low-bit block does not divide (e.g. " +
                           r.stats.skipped_tensors[0] + "): those experts always run exactly";
      TIERLM_RETURN_IF_ERROR(e->tiered_->AttachLowbit(std::move(r.cache)));
    }
  }
  TIERLM_ASSIGN_OR_RETURN(e->model_, LlamaModel::Create(e->file_, e->store_.get()));
  e->model_->set_max_batch(n_batch);
  TIERLM_RETURN_IF_ERROR(kv::CheckKvSparse(o.kv_sparse, o.kv_format.block_size));
  e->model_->set_kv_sparse(o.kv_sparse);
  e->model_->set_kv_evict(o.kv_evict);
  e->model_->moe_ffn().set_gate_ahead(o.gate_ahead && e->tiered_ != nullptr && hp.n_expert > 0);
  e->model_->moe_ffn().set_miss_mode(o.moe_miss);
  if (e->tokenizer_->n_tokens() != hp.n_vocab)
    return Status::Corruption(o.model_path + ": the tokenizer has " + std::to_string(e->tokenizer_->n_tokens()) +
                              " tokens but the model's vocabulary is " + std::to_string(hp.n_vocab));
  if (e->plan_.kv_tiered) {
    e->kv_tier_.env = e->env_.get();
    e->kv_tier_.spill_dir = o.kv_spill_dir.empty() ? DefaultSpillDir(o.model_path) : o.kv_spill_dir;
    e->kv_tier_.budget_bytes = e->plan_.kv_memory_bytes;
  }
  TIERLM_ASSIGN_OR_RETURN(e->model_identity_, ModelContentIdentity(e->file_, o.model_path));
  TIERLM_ASSIGN_OR_RETURN(e->kv_, KvCache::Create(KvShape{hp.n_layer, hp.n_head_kv, hp.head_dim}, n_ctx, o.kv_format,
                                                  e->kv_tier_, e->model_identity_, kv_positions));
  e->load_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return e;
}

}  // namespace tierlm
