// The Mixture-of-Experts feed-forward block: a router picks the top n_expert_used of
// n_expert SwiGLU experts per token and mixes their outputs (llama/Mixtral, qwen2moe,
// qwen3moe, olmoe). Routing is a softmax over all experts, then top-k; the kept weights
// are renormalized to sum to 1 or not, by architecture (ModelHParams::expert_weights_norm).
// qwen2moe adds a shared expert: a dense SwiGLU FFN every token goes through, scaled by
// sigmoid(ffn_gate_inp_shexp . x).
//
// Experts live in stacked tensors (ffn_{gate,up,down}_exps, ne = [n_in, n_out, n_expert]).
// Each expert's slice is described as a tensor of its own (SliceExperts, "name#e"), so the
// weight store can hold, fetch and evict experts one by one. The shared expert's tensors
// are ordinary dense tensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "format/gguf_file.h"
#include "model/hparams.h"
#include "moe/routing_trace.h"
#include "tiers/weight_store.h"

namespace tierlm {

struct MoeTensors {
  int32_t layer = 0;                         // the block's index; names it in a RoutingTrace
  const MoeTensors* next = nullptr;          // the next layer's block if it has experts (gate-ahead)
  const gguf::TensorInfo* router = nullptr;  // ffn_gate_inp [n_embd, n_expert]
  // Per expert e: its slices of the stacked gate/up ([n_embd, n_ff_exp]) and down ([n_ff_exp, n_embd]).
  std::vector<gguf::TensorInfo> gate, up, down;
  // Shared expert (qwen2moe), all null when absent: gate_inp [n_embd] (one logit per token,
  // sigmoid), gate/up [n_embd, n_ff_shexp], down [n_ff_shexp, n_embd].
  const gguf::TensorInfo* shexp_gate_inp = nullptr;
  const gguf::TensorInfo* shexp_gate = nullptr;
  const gguf::TensorInfo* shexp_up = nullptr;
  const gguf::TensorInfo* shexp_down = nullptr;
};

// Splits a stacked expert tensor into one TensorInfo per expert ("name#e").
std::vector<gguf::TensorInfo> SliceExperts(const gguf::TensorInfo& stacked);

// Router decisions for n tokens: for each token, n_used (expert, weight) pairs.
struct Routing {
  int64_t n_used = 0;
  std::vector<int32_t> expert;  // [n][n_used]
  std::vector<float> weight;    // [n][n_used], in descending order
};

// Softmax over the router logits [n][n_expert], keep the top n_used, and if `renormalize`
// divide the kept weights by their sum (equivalently: softmax over the kept logits).
// Ties keep the lower expert id.
Routing Route(const float* logits, int64_t n, int64_t n_expert, int64_t n_used, bool renormalize = true);

// Gate-ahead accuracy: of the experts the next layer's router predicted from this layer's
// input, how many the next layer then chose.
struct GateAheadStats {
  int64_t predicted = 0;  // (token, layer, k) predictions checked
  int64_t correct = 0;    // of them, experts the layer did choose
  double accuracy() const { return predicted > 0 ? static_cast<double>(correct) / predicted : 0.0; }
};

// What the MoE block computes an expert with when its full copy is not resident
// (HOBBIT-style fallback; low-bit copies come from WeightStore::AcquireLowbit):
//   kExact      always the full copy (waits for its read): outputs equal the in-memory run.
//   kLowbit     the low-bit copy unless the full copy is resident now.
//   kAuto       the full copy if it is resident or already being read (gate-ahead
//               prefetch), else the low-bit copy.
//   kLowbitAll  every expert from its low-bit copy (to measure the accuracy cost).
// Without low-bit copies in the store every mode computes exactly.
enum class MoeMiss { kExact, kLowbit, kAuto, kLowbitAll };
const char* MoeMissName(MoeMiss m);
// "exact", "lowbit", "auto", "lowbit-all"; InvalidArgument naming the choices otherwise.
Result<MoeMiss> ParseMoeMiss(const std::string& name);

// Expert computations (token groups x experts) by the copy they used.
struct MoeCopyStats {
  int64_t full = 0;
  int64_t lowbit = 0;
};

class MoeFfn {
 public:
  // out[n][n_embd] = sum over routed experts of weight * expert(xn), plus the gated shared
  // expert if t has one. xn: [n][n_embd]. Not thread-safe: uses scratch buffers.
  Status Forward(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn, int64_t n,
                 float* out, ThreadPool* pool);

  const Routing& last_routing() const { return routing_; }

  // Every Forward appends its routing to `trace` at layer t.layer (nullptr: none, the
  // default). The trace must outlive its use and have this model's shape.
  void set_trace(RoutingTrace* trace) { trace_ = trace; }

  // Gate-ahead prefetch. When on, Forward at a layer whose t.next is set also applies the
  // next layer's router to this layer's input xn (the hidden state after attention,
  // normalized by this layer's ffn_norm), asks the store to prefetch the predicted
  // experts' gate/up/down slices (in ascending expert id) before running its own experts,
  // so their reads overlap this layer's compute; the next layer scores the prediction
  // (gate_ahead_stats). Outputs are unchanged. Default off: one extra router matmul per
  // layer, worth it only when experts stream from storage.
  void set_gate_ahead(bool on) { gate_ahead_ = on; }
  void set_miss_mode(MoeMiss m) { miss_ = m; }
  MoeMiss miss_mode() const { return miss_; }
  const MoeCopyStats& copy_stats() const { return copy_stats_; }
  const GateAheadStats& gate_ahead_stats() const { return gate_ahead_stats_; }

 private:
  Status PredictNext(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn, int64_t n,
                     ThreadPool* pool);

  // One routed expert of this Forward: its tokens, their weights, and the copy to use.
  struct ExpertWork {
    int32_t expert;
    std::vector<int64_t> rows;
    std::vector<float> weight;
    bool lowbit = false;
  };
  // Acquires expert slice t, full or low-bit, and returns it as a matrix.
  Result<TensorPin> AcquireSlice(WeightStore* store, const gguf::TensorInfo& t, bool lowbit, WeightMatrix* m);
  // Groups the routed tokens by expert (work_), picks full or low-bit copies, and starts
  // the reads, in the order the experts will run.
  void PlanExperts(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, int64_t n);
  // Computes work_ into out[n][n_embd].
  Status RunExperts(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn, int64_t n,
                    float* out, ThreadPool* pool);

  RoutingTrace* trace_ = nullptr;
  bool gate_ahead_ = false;
  MoeMiss miss_ = MoeMiss::kExact;
  MoeCopyStats copy_stats_;
  std::vector<ExpertWork> work_;
  GateAheadStats gate_ahead_stats_;
  int32_t predicted_layer_ = -1;    // the layer predicted_ is for; -1: none pending
  int64_t predicted_n_ = 0;         // tokens in predicted_
  std::vector<int32_t> predicted_;  // [n][n_expert_used]
  Status SharedExpert(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn, int64_t n,
                      float* out, ThreadPool* pool);

  std::vector<float> logits_, xe_, gate_, up_, down_, shexp_w_;
  std::vector<int64_t> rows_;
  Routing routing_;
};

}  // namespace tierlm
