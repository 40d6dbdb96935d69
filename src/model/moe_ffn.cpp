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
  // In lowbit modes a predicted expert whose full copy is not resident will run from its
  // low-bit copy: read that (58% of Q4_0's bytes) instead of the full copy.
  const bool low_ahead = (miss_ == MoeMiss::kLowbit || miss_ == MoeMiss::kLowbitAll) && store->has_lowbit();
  std::vector<const gguf::TensorInfo*> upcoming, upcoming_low;
  for (int64_t e = 0; e < X; ++e)
    if (wanted[static_cast<size_t>(e)]) {
      const gguf::TensorInfo* slices[3] = {&t.next->gate[static_cast<size_t>(e)], &t.next->up[static_cast<size_t>(e)],
                                           &t.next->down[static_cast<size_t>(e)]};
      bool low = low_ahead && (miss_ == MoeMiss::kLowbitAll);
      if (low_ahead && !low)
        for (const gguf::TensorInfo* s : slices)
          if (store->HasLowbit(*s) && store->Probe(*s) != WeightStore::Residency::kResident) low = true;
      for (const gguf::TensorInfo* s : slices) (low ? upcoming_low : upcoming).push_back(s);
    }
  if (!upcoming.empty()) store->Prefetch(upcoming);
  if (!upcoming_low.empty()) store->PrefetchLowbit(upcoming_low);
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
  // This layer's experts are announced to the store (reads started, resident ones
  // protected) before the gate-ahead prefetch for the next layer can claim room.
  PlanExperts(store, t, hp, n);
  if (gate_ahead_) TIERLM_RETURN_IF_ERROR(PredictNext(store, t, hp, xn, n, pool));
  TIERLM_RETURN_IF_ERROR(RunExperts(store, t, hp, xn, n, out, pool));
  if (t.shexp_gate) TIERLM_RETURN_IF_ERROR(SharedExpert(store, t, hp, xn, n, out, pool));
  return Status::Ok();
}

const char* MoeMissName(MoeMiss m) {
  switch (m) {
    case MoeMiss::kExact: return "exact";
    case MoeMiss::kLowbit: return "lowbit";
    case MoeMiss::kAuto: return "auto";
    case MoeMiss::kLowbitAll: return "lowbit-all";
  }
  return "?";
}

Result<MoeMiss> ParseMoeMiss(const std::string& name) {
  for (MoeMiss m : {MoeMiss::kExact, MoeMiss::kLowbit, MoeMiss::kAuto, MoeMiss::kLowbitAll})
    if (name == MoeMissName(m)) return m;
  return Status::InvalidArgument("--moe-miss: '" + name + "' is not one of exact, lowbit, auto, lowbit-all");
}

Result<TensorPin> MoeFfn::AcquireSlice(WeightStore* store, const gguf::TensorInfo& t, bool lowbit, WeightMatrix* m) {
  GgmlType type = t.type;
  Result<TensorPin> pin = lowbit ? store->AcquireLowbit(t, &type) : store->Acquire(t);
  if (pin.ok()) *m = WeightMatrix{type, pin->data(), t.ne[0], t.ne[1]};
  return pin;
}

void MoeFfn::PlanExperts(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, int64_t n) {
  const int64_t X = hp.n_expert, K = routing_.n_used;
  // The experts this batch routes to, ascending, with their tokens.
  std::vector<int32_t> slot(static_cast<size_t>(X), -1);
  work_.clear();
  for (int64_t tok = 0; tok < n; ++tok)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = routing_.expert[static_cast<size_t>(tok * K + k)];
      if (slot[static_cast<size_t>(e)] < 0) {
        slot[static_cast<size_t>(e)] = 0;
        work_.push_back(ExpertWork{e, {}, {}, false});
      }
    }
  std::sort(work_.begin(), work_.end(), [](const ExpertWork& a, const ExpertWork& b) { return a.expert < b.expert; });
  for (size_t i = 0; i < work_.size(); ++i) slot[static_cast<size_t>(work_[i].expert)] = static_cast<int32_t>(i);
  for (int64_t tok = 0; tok < n; ++tok)
    for (int64_t k = 0; k < K; ++k) {
      ExpertWork& w = work_[static_cast<size_t>(slot[static_cast<size_t>(routing_.expert[static_cast<size_t>(tok * K + k)])])];
      w.rows.push_back(tok);
      w.weight.push_back(routing_.weight[static_cast<size_t>(tok * K + k)]);
    }

  // Full or low-bit copy, per expert (all three slices alike).
  const bool can_fallback = miss_ != MoeMiss::kExact && store->has_lowbit();
  for (ExpertWork& w : work_) {
    if (!can_fallback) continue;
    const size_t e = static_cast<size_t>(w.expert);
    if (!store->HasLowbit(t.gate[e]) || !store->HasLowbit(t.up[e]) || !store->HasLowbit(t.down[e])) continue;
    if (miss_ == MoeMiss::kLowbitAll) {
      w.lowbit = true;
      continue;
    }
    for (const auto* slices : {&t.gate, &t.up, &t.down}) {
      const WeightStore::Residency r = store->Probe((*slices)[static_cast<size_t>(w.expert)]);
      if (r == WeightStore::Residency::kAbsent || (miss_ == MoeMiss::kLowbit && r != WeightStore::Residency::kResident))
        w.lowbit = true;
    }
  }
  // Start every read this batch needs at once (they overlap each other and the compute
  // of the experts already resident), in the order they will be used.
  std::vector<const gguf::TensorInfo*> full, low;
  for (const ExpertWork& w : work_)
    for (const auto* slices : {&t.gate, &t.up, &t.down})
      (w.lowbit ? low : full).push_back(&(*slices)[static_cast<size_t>(w.expert)]);
  if (!full.empty()) store->Prefetch(full);
  if (!low.empty()) store->PrefetchLowbit(low);
  for (const ExpertWork& w : work_) ++(w.lowbit ? copy_stats_.lowbit : copy_stats_.full);
}

Status MoeFfn::RunExperts(WeightStore* store, const MoeTensors& t, const ModelHParams& hp, const float* xn, int64_t n,
                          float* out, ThreadPool* pool) {
  const int64_t E = hp.n_embd, F = hp.n_ff_exp;
  std::fill(out, out + n * E, 0.0f);
  if (n == 1) {
    // Decode: every expert's gate and up in one parallel pass, then every down in another.
    const size_t m = work_.size();
    gate_.resize(m * static_cast<size_t>(F));
    up_.resize(m * static_cast<size_t>(F));
    down_.resize(m * static_cast<size_t>(E));
    std::vector<TensorPin> pins;
    std::vector<MatmulJob> jobs;
    for (size_t i = 0; i < m; ++i) {
      const ExpertWork& w = work_[i];
      WeightMatrix g{}, u{};
      TIERLM_ASSIGN_OR_RETURN(TensorPin gp, AcquireSlice(store, t.gate[static_cast<size_t>(w.expert)], w.lowbit, &g));
      TIERLM_ASSIGN_OR_RETURN(TensorPin upin, AcquireSlice(store, t.up[static_cast<size_t>(w.expert)], w.lowbit, &u));
      pins.push_back(std::move(gp));
      pins.push_back(std::move(upin));
      jobs.push_back({g, xn, E, 1, gate_.data() + i * F, F});
      jobs.push_back({u, xn, E, 1, up_.data() + i * F, F});
    }
    MatmulBatch(jobs, pool);
    pins.clear();
    jobs.clear();
    for (size_t i = 0; i < m; ++i) SwiGlu(gate_.data() + i * F, up_.data() + i * F, gate_.data() + i * F, F);
    for (size_t i = 0; i < m; ++i) {
      const ExpertWork& w = work_[i];
      WeightMatrix d{};
      TIERLM_ASSIGN_OR_RETURN(TensorPin dp, AcquireSlice(store, t.down[static_cast<size_t>(w.expert)], w.lowbit, &d));
      pins.push_back(std::move(dp));
      jobs.push_back({d, gate_.data() + i * F, F, 1, down_.data() + i * E, E});
    }
    MatmulBatch(jobs, pool);
    pins.clear();
    for (size_t i = 0; i < m; ++i) {
      const float wt = work_[i].weight[0];
      const float* dr = down_.data() + i * E;
      for (int64_t j = 0; j < E; ++j) out[j] += wt * dr[j];
    }
    return Status::Ok();
  }

  // Batches: expert by expert, gather its tokens, run its SwiGLU, scatter weighted outputs.
  for (const ExpertWork& w : work_) {
    const int64_t m = static_cast<int64_t>(w.rows.size());
    xe_.resize(static_cast<size_t>(m * E));
    gate_.resize(static_cast<size_t>(m * F));
    up_.resize(static_cast<size_t>(m * F));
    down_.resize(static_cast<size_t>(m * E));
    for (int64_t i = 0; i < m; ++i) std::copy_n(xn + w.rows[static_cast<size_t>(i)] * E, E, xe_.data() + i * E);
    {
      WeightMatrix g{}, u{};
      TIERLM_ASSIGN_OR_RETURN(TensorPin gp, AcquireSlice(store, t.gate[static_cast<size_t>(w.expert)], w.lowbit, &g));
      TIERLM_ASSIGN_OR_RETURN(TensorPin upin, AcquireSlice(store, t.up[static_cast<size_t>(w.expert)], w.lowbit, &u));
      const MatmulJob jobs[2] = {{g, xe_.data(), E, m, gate_.data(), F}, {u, xe_.data(), E, m, up_.data(), F}};
      MatmulBatch(jobs, pool);
    }
    for (int64_t i = 0; i < m; ++i) SwiGlu(gate_.data() + i * F, up_.data() + i * F, gate_.data() + i * F, F);
    {
      WeightMatrix d{};
      TIERLM_ASSIGN_OR_RETURN(TensorPin dp, AcquireSlice(store, t.down[static_cast<size_t>(w.expert)], w.lowbit, &d));
      Matmul(d, gate_.data(), F, m, down_.data(), E, pool);
    }
    for (int64_t i = 0; i < m; ++i) {
      float* o = out + w.rows[static_cast<size_t>(i)] * E;
      const float* dr = down_.data() + i * E;
      const float wt = w.weight[static_cast<size_t>(i)];
      for (int64_t j = 0; j < E; ++j) o[j] += wt * dr[j];
    }
  }
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
