#include "model/moe_ffn.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant.h"

namespace tierlm {

std::vector<gguf::TensorInfo> SliceExperts(const gguf::TensorInfo& stacked) {
  std::vector<gguf::TensorInfo> out;
  const int64_t n_expert = stacked.ne[2];
  const uint64_t slice_bytes = stacked.size_bytes / static_cast<uint64_t>(n_expert);
  for (int64_t e = 0; e < n_expert; ++e) {
    gguf::TensorInfo t = stacked;
    t.name = stacked.name + "#" + std::to_string(e);
    t.n_dims = 2;
    t.ne = {stacked.ne[0], stacked.ne[1], 1, 1};
    t.size_bytes = slice_bytes;
    t.offset = stacked.offset + slice_bytes * static_cast<uint64_t>(e);
    t.file_offset = stacked.file_offset + slice_bytes * static_cast<uint64_t>(e);
    out.push_back(std::move(t));
  }
  return out;
}

Routing Route(const float* logits, int64_t n, int64_t n_expert, int64_t n_used, bool renormalize) {
  Routing r;
  r.n_used = n_used;
  r.expert.resize(static_cast<size_t>(n * n_used));
  r.weight.resize(static_cast<size_t>(n * n_used));
  std::vector<int32_t> order(static_cast<size_t>(n_expert));
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * n_expert;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + n_used, order.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    const float mx = l[order[0]];
    // The denominator: the kept experts' mass, or every expert's (plain softmax).
    double sum = 0;
    const int64_t n_sum = renormalize ? n_used : n_expert;
    for (int64_t k = 0; k < n_sum; ++k) sum += std::exp(static_cast<double>(l[renormalize ? order[k] : k] - mx));
    for (int64_t k = 0; k < n_used; ++k) {
      r.expert[t * n_used + k] = order[k];
      r.weight[t * n_used + k] = static_cast<float>(std::exp(static_cast<double>(l[order[k]] - mx)) / sum);
    }
  }
  return r;
}

Status MoeFfn::PredictNext(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn,
                           int64_t n, ThreadPool* pool) {
  const int64_t K = routing_.n_used, X = hp.n_expert;
  // Score the prediction the previous layer made for this one.
  if (predicted_layer_ == t.layer && predicted_n_ == n) {
    for (int64_t tok = 0; tok < n; ++tok)
      for (int64_t k = 0; k < K; ++k) {
        const int32_t* chosen = routing_.expert.data() + tok * K;
        gate_ahead_stats_.correct += std::count(chosen, chosen + K, predicted_[static_cast<size_t>(tok * K + k)]);
      }
    gate_ahead_stats_.predicted += n * K;
  }
  predicted_layer_ = -1;
  if (!t.next) return Status::Ok();

  // The next layer's router on this layer's input.
  std::vector<float> logits(static_cast<size_t>(n * X));
  {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store->Acquire(*t.next->router));
    Matmul(WeightMatrix{t.next->router->type, pin.data(), hp.n_embd, X}, xn, hp.n_embd, n, logits.data(), X, pool);
  }
  predicted_ = Route(logits.data(), n, X, K, hp.expert_weights_norm).expert;
  predicted_layer_ = t.next->layer;
  predicted_n_ = n;

  std::vector<bool> wanted(static_cast<size_t>(X), false);
  for (int32_t e : predicted_) wanted[static_cast<size_t>(e)] = true;
  std::vector<const gguf::TensorInfo*> upcoming;
  for (int64_t e = 0; e < X; ++e)
    if (wanted[static_cast<size_t>(e)]) {
      upcoming.push_back(&t.next->gate[static_cast<size_t>(e)]);
      upcoming.push_back(&t.next->up[static_cast<size_t>(e)]);
      upcoming.push_back(&t.next->down[static_cast<size_t>(e)]);
    }
  store->Prefetch(upcoming);
  return Status::Ok();
}

Status MoeFfn::Forward(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn, int64_t n,
                       float* out, ThreadPool* pool) {
  const int64_t E = hp.n_embd, F = hp.n_ff_exp, X = hp.n_expert;
  logits_.resize(static_cast<size_t>(n * X));
  {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store->Acquire(*t.router));
    Matmul(WeightMatrix{t.router->type, pin.data(), E, X}, xn, E, n, logits_.data(), X, pool);
  }
  routing_ = Route(logits_.data(), n, X, hp.n_expert_used, hp.expert_weights_norm);
  if (trace_) TIERLM_RETURN_IF_ERROR(trace_->Record(t.layer, n, routing_.expert.data(), routing_.weight.data()));
  if (gate_ahead_) TIERLM_RETURN_IF_ERROR(PredictNext(store, t, hp, xn, n, pool));
  std::fill(out, out + n * E, 0.0f);

  // Expert by expert: gather its tokens, run its SwiGLU, scatter weighted outputs.
  for (int64_t e = 0; e < X; ++e) {
    rows_.clear();
    std::vector<float> w;
    for (int64_t tok = 0; tok < n; ++tok)
      for (int64_t k = 0; k < routing_.n_used; ++k)
        if (routing_.expert[tok * routing_.n_used + k] == e) {
          rows_.push_back(tok);
          w.push_back(routing_.weight[tok * routing_.n_used + k]);
        }
    const int64_t m = static_cast<int64_t>(rows_.size());
    if (m == 0) continue;
    xe_.resize(static_cast<size_t>(m * E));
    gate_.resize(static_cast<size_t>(m * F));
    up_.resize(static_cast<size_t>(m * F));
    down_.resize(static_cast<size_t>(m * E));
    for (int64_t i = 0; i < m; ++i) std::copy_n(xn + rows_[i] * E, E, xe_.data() + i * E);
    const gguf::TensorInfo& g = t.gate[static_cast<size_t>(e)];
    const gguf::TensorInfo& u = t.up[static_cast<size_t>(e)];
    const gguf::TensorInfo& d = t.down[static_cast<size_t>(e)];
    {
      TIERLM_ASSIGN_OR_RETURN(TensorPin gp, store->Acquire(g));
      Matmul(WeightMatrix{g.type, gp.data(), E, F}, xe_.data(), E, m, gate_.data(), F, pool);
    }
    {
      TIERLM_ASSIGN_OR_RETURN(TensorPin up, store->Acquire(u));
      Matmul(WeightMatrix{u.type, up.data(), E, F}, xe_.data(), E, m, up_.data(), F, pool);
    }
    for (int64_t i = 0; i < m; ++i) SwiGlu(gate_.data() + i * F, up_.data() + i * F, gate_.data() + i * F, F);
    {
      TIERLM_ASSIGN_OR_RETURN(TensorPin dp, store->Acquire(d));
      Matmul(WeightMatrix{d.type, dp.data(), F, E}, gate_.data(), F, m, down_.data(), E, pool);
    }
    for (int64_t i = 0; i < m; ++i) {
      float* o = out + rows_[i] * E;
      const float* dr = down_.data() + i * E;
      for (int64_t j = 0; j < E; ++j) o[j] += w[static_cast<size_t>(i)] * dr[j];
    }
  }
  if (t.shexp_gate) TIERLM_RETURN_IF_ERROR(SharedExpert(store, t, hp, xn, n, out, pool));
  return Status::Ok();
}

Status MoeFfn::SharedExpert(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn,
                            int64_t n, float* out, ThreadPool* pool) {
  const int64_t E = hp.n_embd, F = hp.n_ff_shexp;
  gate_.resize(static_cast<size_t>(n * F));
  up_.resize(static_cast<size_t>(n * F));
  down_.resize(static_cast<size_t>(n * E));
  shexp_w_.resize(static_cast<size_t>(E));
  {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store->Acquire(*t.shexp_gate_inp));
    DequantizeRow(t.shexp_gate_inp->type, pin.data(), shexp_w_.data(), E);
  }
  {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store->Acquire(*t.shexp_gate));
    Matmul(WeightMatrix{t.shexp_gate->type, pin.data(), E, F}, xn, E, n, gate_.data(), F, pool);
  }
  {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store->Acquire(*t.shexp_up));
    Matmul(WeightMatrix{t.shexp_up->type, pin.data(), E, F}, xn, E, n, up_.data(), F, pool);
  }
  for (int64_t i = 0; i < n; ++i) SwiGlu(gate_.data() + i * F, up_.data() + i * F, gate_.data() + i * F, F);
  {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store->Acquire(*t.shexp_down));
    Matmul(WeightMatrix{t.shexp_down->type, pin.data(), F, E}, gate_.data(), F, n, down_.data(), E, pool);
  }
  for (int64_t i = 0; i < n; ++i) {
    double dot = 0;
    for (int64_t j = 0; j < E; ++j) dot += static_cast<double>(shexp_w_[j]) * xn[i * E + j];
    const float g = static_cast<float>(1.0 / (1.0 + std::exp(-dot)));
    float* o = out + i * E;
    const float* d = down_.data() + i * E;
    for (int64_t j = 0; j < E; ++j) o[j] += g * d[j];
  }
  return Status::Ok();
}

}  // namespace tierlm
