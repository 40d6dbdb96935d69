// The Mixture-of-Experts feed-forward block (Mixtral layout): a router picks the top
// n_expert_used of n_expert SwiGLU experts per token and mixes their outputs.
//
// Experts live in stacked tensors (ffn_{gate,up,down}_exps, ne = [n_in, n_out, n_expert]).
// Each expert's slice is described as a tensor of its own (ExpertSlice), so the weight
// store can hold, fetch and evict experts one by one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "model/hparams.h"
#include "tiers/weight_store.h"

namespace tierlm {

struct MoeTensors {
  const gguf::TensorInfo* router = nullptr;  // ffn_gate_inp [n_embd, n_expert]
  // Per expert e: its slices of the stacked gate/up ([n_embd, n_ff]) and down ([n_ff, n_embd]).
  std::vector<gguf::TensorInfo> gate, up, down;
};

// Splits a stacked expert tensor into one TensorInfo per expert ("name#e").
std::vector<gguf::TensorInfo> SliceExperts(const gguf::TensorInfo& stacked);

// Router decisions for n tokens: for each token, n_used (expert, weight) pairs.
struct Routing {
  int64_t n_used = 0;
  std::vector<int32_t> expert;  // [n][n_used]
  std::vector<float> weight;    // [n][n_used], sums to 1 per token
};

// Softmax over the router logits [n][n_expert], keep the top n_used, renormalize
// (equivalently: softmax over the kept logits). Ties keep the lower expert id.
Routing Route(const float* logits, int64_t n, int64_t n_expert, int64_t n_used);

class MoeFfn {
 public:
  // out[n][n_embd] = sum over routed experts of weight * expert(xn). xn: [n][n_embd].
  // Not thread-safe: uses scratch buffers.
  Status Forward(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn, int64_t n,
                 float* out, ThreadPool* pool);

  const Routing& last_routing() const { return routing_; }

 private:
  std::vector<float> logits_, xe_, gate_, up_, down_;
  std::vector<int64_t> rows_;
  Routing routing_;
};

}  // namespace tierlm
