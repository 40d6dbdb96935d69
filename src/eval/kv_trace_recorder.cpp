#include "eval/kv_trace_recorder.h"

#include <cmath>

#include "kernels/attention_mass.h"
#include "kernels/block_score.h"

namespace tierlm::eval {

Result<KvTrace> RecordKvTrace(Engine& engine, std::span<const int32_t> tokens, int64_t n_prefill) {
  LlamaModel& model = engine.model();
  KvCache& kv = engine.kv();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n_prefill < 1 || n_prefill >= n)
    return Status::InvalidArgument("kv trace: " + std::to_string(n_prefill) + " prompt tokens of " + std::to_string(n) +
                                   ": need at least one to prefill and one to decode");
  if (n > kv.n_ctx())
    return Status::InvalidArgument("kv trace: " + std::to_string(n) + " tokens exceed the context " +
                                   std::to_string(kv.n_ctx()) + " (raise -c)");
  if (model.kv_sparse().mode != kv::KvSparseMode::kExact || model.kv_evict().mode != kv::KvEvictMode::kNone)
    return Status::InvalidArgument("kv trace: records exact attention (no --kv-sparse, no --kv-evict)");
  const ModelHParams& hp = model.hparams();
  KvTrace t;
  t.n_layer = static_cast<int32_t>(hp.n_layer);
  t.n_head_kv = static_cast<int32_t>(hp.n_head_kv);
  t.block_size = kv.paged().blocks().block_size();
  kv.set_n_past(0);
  kv.paged().store().EnableSummaries();
  const kv::KvBlockSummaries& sums = kv.paged().store().summaries();
  const AttentionShape shape{hp.n_head, hp.n_head_kv, hp.head_dim, 1.0f / std::sqrt(static_cast<float>(hp.head_dim))};
  const int64_t G = hp.n_head / hp.n_head_kv, bs = t.block_size;
  bool on = false;
  std::vector<double> mass;
  model.set_attention_observer([&](int64_t layer, const kv::PagedKvLayer& layer_kv, std::span<const PagedQuery> rows,
                                   const float* q) {
    if (!on || rows.size() != 1) return;
    const PagedQuery& row = rows[0];
    const int64_t nb = (row.n_keys + bs - 1) / bs;
    mass.assign(static_cast<size_t>(hp.n_head_kv * nb), 0.0);
    const uint8_t active = 1;
    AddAttentionBlockMass(shape, layer_kv, rows, &active, q, mass.data(), nb, nullptr, /*by_kv_head=*/true);
    for (int64_t g = 0; g < hp.n_head_kv; ++g) {
      KvTraceRecord r;
      r.pos = row.n_keys - 1;
      r.layer = static_cast<int32_t>(layer);
      r.head = static_cast<int32_t>(g);
      r.share.resize(static_cast<size_t>(nb));
      for (int64_t b = 0; b < nb; ++b) r.share[static_cast<size_t>(b)] = static_cast<float>(mass[g * nb + b] / G);
      r.quest.resize(static_cast<size_t>(nb));
      QuestBlockScores(q + g * G * hp.head_dim, G, hp.head_dim, sums.Bounds(layer, 0, g), hp.n_head_kv * 2 * hp.head_dim,
                       row.blocks, nb, r.quest.data());
      t.records.push_back(std::move(r));
    }
  });
  std::vector<float> logits;
  Status st = model.Forward(tokens.first(static_cast<size_t>(n_prefill)), kv, false, &logits, &engine.pool());
  on = true;
  for (int64_t p = n_prefill; st.ok() && p < n; ++p)
    st = model.Forward(tokens.subspan(static_cast<size_t>(p), 1), kv, false, &logits, &engine.pool());
  model.set_attention_observer(nullptr);
  kv.set_n_past(0);
  TIERLM_RETURN_IF_ERROR(st);
  return t;
}

}  // namespace tierlm::eval
