// The Llama-family decoder (llama, qwen2, and the MoE variants llama+experts, qwen2moe,
// qwen3moe, olmoe): one forward pass over a batch of tokens.
//
// The model holds tensor descriptions, not bytes: every layer's weights are acquired
// from the WeightStore when the layer runs and released after, so the same code runs on
// an in-memory store or a tiered one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "kernels/attention.h"
#include "kernels/paged_attention.h"
#include "kv/block_selector.h"
#include "kv/kv_evictor.h"
#include "kv/kv_cache.h"
#include "kv/paged_kv_cache.h"
#include "model/batch.h"
#include "model/hparams.h"
#include "model/moe_ffn.h"
#include "tiers/weight_store.h"

namespace tierlm {

struct LayerTensors {
  const gguf::TensorInfo* attn_norm = nullptr;  // [n_embd]
  const gguf::TensorInfo* wq = nullptr;         // [n_embd, q_dim]
  const gguf::TensorInfo* wk = nullptr;         // [n_embd, kv_dim]
  const gguf::TensorInfo* wv = nullptr;         // [n_embd, kv_dim]
  const gguf::TensorInfo* bq = nullptr;         // [q_dim] (qwen2)
  const gguf::TensorInfo* bk = nullptr;         // [kv_dim] (qwen2)
  const gguf::TensorInfo* bv = nullptr;         // [kv_dim] (qwen2)
  const gguf::TensorInfo* q_norm = nullptr;     // [head_dim] (qwen3moe) or [q_dim] (olmoe)
  const gguf::TensorInfo* k_norm = nullptr;     // [head_dim] (qwen3moe) or [kv_dim] (olmoe)
  const gguf::TensorInfo* wo = nullptr;         // [q_dim, n_embd]
  const gguf::TensorInfo* ffn_norm = nullptr;   // [n_embd]
  const gguf::TensorInfo* w_gate = nullptr;     // [n_embd, n_ff]
  const gguf::TensorInfo* w_up = nullptr;       // [n_embd, n_ff]
  const gguf::TensorInfo* w_down = nullptr;     // [n_ff, n_embd]
  bool is_moe = false;                          // experts replace gate/up/down
  MoeTensors moe;
};

class LlamaModel {
 public:
  // Resolves and checks every tensor the architecture needs (names, shapes, types).
  // `file` and `store` must outlive the model.
  static Result<std::unique_ptr<LlamaModel>> Create(const gguf::GgufFile& file, WeightStore* store);

  const ModelHParams& hparams() const { return hp_; }
  KvShape kv_shape() const { return {hp_.n_layer, hp_.n_head_kv, hp_.head_dim}; }

  // Runs tokens at positions [kv.n_past(), kv.n_past() + n) and appends their keys and
  // values to kv. On success `logits` holds [n][n_vocab] floats when all_logits, else the
  // last token's [n_vocab]. Batches longer than max_batch are split internally.
  // Not thread-safe: one Forward at a time per model (it reuses scratch buffers).
  Status Forward(std::span<const int32_t> tokens, KvCache& kv, bool all_logits, std::vector<float>* logits,
                 ThreadPool* pool);

  // Runs a batch of tokens of any number of sequences over a paged KV cache (batch.h,
  // kv/paged_kv_cache.h). Each token must have been added to the cache (AddTokens) and each
  // sequence's tokens must continue where its computed positions end, in order; their keys
  // and values are written to the cache and each token attends to its own sequence.
  // `logits` gets [n][n_vocab] for the tokens whose logits are wanted, in batch order.
  // Each weight matrix is acquired once per max_batch tokens and multiplies all of them.
  //
  // A sequence whose KV blocks cannot be had (a tiered cache's read error, a block lost to
  // a failed write or a full disk) fails alone: with `failed` set, it is listed there with
  // the error (naming the sequence, layer and block), its logit rows are zeros, its
  // computed positions do not advance, and every other sequence's results are exactly what
  // they would have been without it (the caller ends or retries the failed one). Without
  // `failed`, the first such error is returned. Other errors (weights) fail the call.
  struct SeqFailure {
    kv::SeqId seq;
    Status status;
  };
  Status Forward(const Batch& batch, kv::PagedKvCache& cache, std::vector<float>* logits, ThreadPool* pool,
                 std::vector<SeqFailure>* failed = nullptr);

  int64_t max_batch() const { return max_batch_; }
  void set_max_batch(int64_t n) { max_batch_ = n > 0 ? n : 1; }

  // Sparse KV retrieval for the decode rows of Forward(Batch, ...) (kv/block_selector.h):
  // set it before a paged cache is first filled (the cache keeps block key bounds from
  // then on). kExact (the default) reads every block. REQUIRES: CheckKvSparse passed.
  void set_kv_sparse(const kv::KvSparseOptions& options);
  const kv::KvSparseOptions& kv_sparse() const { return sparse_; }
  // Bounded KV per sequence (kv/kv_evictor.h): after each Forward(Batch, ...) every
  // sequence of the batch is cut to options.max_tokens positions' blocks by the policy;
  // Forward(tokens, kv) prefills in chunks of options.prefill_chunk so a prompt never needs
  // more. kNone (the default) keeps everything. Not with a sparse mode (Forward refuses
  // both). REQUIRES: CheckKvEvict passed.
  void set_kv_evict(const kv::KvEvictOptions& options);
  const kv::KvEvictOptions& kv_evict() const { return evict_; }
  // Blocks evicted since the model was made.
  uint64_t kv_evicted_blocks() const { return evictor_ ? evictor_->evicted_blocks() : 0; }
  // Called in Forward(Batch, ...) after each layer's paged attention, with the layer, its
  // KV (pinned), the rows' queries and their q (RoPE applied): what an attention trace
  // records (eval/kv_trace.h). Null (the default): nothing.
  using AttentionObserver =
      std::function<void(int64_t layer, const kv::PagedKvLayer& kv, std::span<const PagedQuery> rows, const float* q)>;
  void set_attention_observer(AttentionObserver observer) { observer_ = std::move(observer); }
  // KV blocks attention read, counted per (row, layer, KV head) over the paged forwards
  // since the last reset: of `total` blocks the rows' positions cover, `read` were read.
  struct KvReadStats {
    uint64_t total = 0, read = 0;
  };
  const KvReadStats& kv_read_stats() const { return read_stats_; }
  void reset_kv_read_stats() { read_stats_ = {}; }

  // The MoE block shared by all layers: routing trace and gate-ahead switches (moe_ffn.h).
  MoeFfn& moe_ffn() { return moe_ffn_; }

 private:
  LlamaModel() = default;
  // Writes one layer's keys and values (RoPE applied) and its attention output.
  using AttendFn = std::function<Status(int64_t layer, const float* q, const float* k, const float* v, float* out)>;
  // The layers over n token rows at positions pos; logits of the rows with want_logits set,
  // in order, into logits_out (may be null: none).
  Status ForwardRows(const int32_t* tokens, const int64_t* pos, int64_t n, const AttendFn& attend,
                     const uint8_t* want_logits, float* logits_out, ThreadPool* pool);
  AttentionShape attention_shape() const;
  Status Embed(const int32_t* tokens, int64_t n, float* x);

  const gguf::GgufFile* file_ = nullptr;
  WeightStore* store_ = nullptr;
  ModelHParams hp_;
  const gguf::TensorInfo* tok_embd_ = nullptr;     // [n_embd, n_vocab]
  const gguf::TensorInfo* output_norm_ = nullptr;  // [n_embd]
  const gguf::TensorInfo* output_ = nullptr;       // [n_embd, n_vocab] (token_embd if tied)
  std::vector<LayerTensors> layers_;
  int64_t max_batch_ = 512;
  std::vector<float> rope_inv_freq_;  // [n_rot / 2]
  MoeFfn moe_ffn_;

  // Scratch, sized for max_batch tokens on first use.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, norm_w_;
  std::vector<PagedQuery> queries_;
  std::vector<uint8_t> skip_all_;  // a skip mask of every block: rows of failed sequences
  AttentionObserver observer_;
  kv::KvEvictOptions evict_;
  std::unique_ptr<kv::KvEvictor> evictor_;
  std::vector<double> mass_;  // per row of a chunk and block: attention share (evictor_)
  kv::KvSparseOptions sparse_;
  std::unique_ptr<kv::BlockSelector> selector_;
  const kv::KvBlockSummaries* selector_summaries_ = nullptr;  // what selector_ reads
  std::vector<std::vector<uint8_t>> row_skip_;  // per row of a chunk: its selection's skip mask
  KvReadStats read_stats_;
  Batch single_;  // Forward(tokens, kv)'s batch
};

}  // namespace tierlm
