#include "model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "kernels/attention.h"
#include "kernels/attention_mass.h"
#include "kernels/paged_attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant.h"

namespace tierlm {
namespace {

// Looks up a tensor and checks its shape (ggml order) and that tierlm can compute with it.
Status Need(const gguf::GgufFile& f, const std::string& name, std::vector<int64_t> shape,
            const gguf::TensorInfo** out, bool optional = false) {
  const gguf::TensorInfo* t = f.FindTensor(name);
  if (!t) {
    if (optional) {
      *out = nullptr;
      return Status::Ok();
    }
    return Status::NotFound(f.name() + ": required tensor '" + name + "' is missing");
  }
  bool ok = t->n_dims >= 1 && static_cast<size_t>(t->n_dims) <= shape.size() + 1;
  for (size_t d = 0; ok && d < 4; ++d) ok = t->ne[d] == (d < shape.size() ? shape[d] : 1);
  if (!ok) {
    std::string want = "[";
    for (size_t d = 0; d < shape.size(); ++d) want += (d ? ", " : "") + std::to_string(shape[d]);
    return Status::Corruption(f.name() + ": tensor '" + name + "' has shape " + t->ShapeString() + ", expected " +
                              want + "]");
  }
  if (!TypeTraits(t->type).supported)
    return Status::Unsupported(f.name() + ": tensor '" + name + "' has type " + std::string(TypeName(t->type)) +
                               ", which tierlm does not support yet (supported: f32, f16, bf16, q8_0, q4_0, q4_K, q6_K)");
  *out = t;
  return Status::Ok();
}

WeightMatrix AsMatrix(const gguf::TensorInfo& t, const TensorPin& pin) {
  return WeightMatrix{t.type, pin.data(), t.ne[0], t.ne[1]};
}

}  // namespace

Result<std::unique_ptr<LlamaModel>> LlamaModel::Create(const gguf::GgufFile& file, WeightStore* store) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  m->file_ = &file;
  m->store_ = store;
  TIERLM_ASSIGN_OR_RETURN(m->hp_, ModelHParams::FromGguf(file));
  const ModelHParams& hp = m->hp_;
  const int64_t E = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), F = hp.n_ff, V = hp.n_vocab;

  TIERLM_RETURN_IF_ERROR(Need(file, "token_embd.weight", {E, V}, &m->tok_embd_));
  TIERLM_RETURN_IF_ERROR(Need(file, "output_norm.weight", {E}, &m->output_norm_));
  TIERLM_RETURN_IF_ERROR(Need(file, "output.weight", {E, V}, &m->output_, /*optional=*/true));
  if (!m->output_) m->output_ = m->tok_embd_;  // tied classifier

  m->layers_.resize(static_cast<size_t>(hp.n_layer));
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    LayerTensors& L = m->layers_[static_cast<size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_norm.weight", {E}, &L.attn_norm));
    TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_q.weight", {E, Q}, &L.wq));
    TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_k.weight", {E, KV}, &L.wk));
    TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_v.weight", {E, KV}, &L.wv));
    TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_output.weight", {Q, E}, &L.wo));
    const bool bias_required = hp.qkv_bias;
    if (hp.arch != Arch::kOlmoe) {  // llama.cpp's olmoe graph has no Q/K/V biases
      TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_q.bias", {Q}, &L.bq, !bias_required));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_k.bias", {KV}, &L.bk, !bias_required));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_v.bias", {KV}, &L.bv, !bias_required));
    }
    if (hp.qk_norm == QkNorm::kPerHead) {
      TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_q_norm.weight", {hp.head_dim}, &L.q_norm));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_k_norm.weight", {hp.head_dim}, &L.k_norm));
    } else if (hp.qk_norm == QkNorm::kWhole) {
      TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_q_norm.weight", {Q}, &L.q_norm));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "attn_k_norm.weight", {KV}, &L.k_norm));
    }
    TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_norm.weight", {E}, &L.ffn_norm));
    if (hp.n_expert > 0) {
      const int64_t X = hp.n_expert, FX = hp.n_ff_exp;
      const gguf::TensorInfo *gate = nullptr, *up = nullptr, *down = nullptr;
      L.is_moe = true;
      L.moe.layer = static_cast<int32_t>(l);
      TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_gate_inp.weight", {E, X}, &L.moe.router));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_gate_exps.weight", {E, FX, X}, &gate));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_up_exps.weight", {E, FX, X}, &up));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_down_exps.weight", {FX, E, X}, &down));
      L.moe.gate = SliceExperts(*gate);
      L.moe.up = SliceExperts(*up);
      L.moe.down = SliceExperts(*down);
      if (hp.n_ff_shexp > 0) {
        const int64_t FS = hp.n_ff_shexp;
        TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_gate_inp_shexp.weight", {E}, &L.moe.shexp_gate_inp));
        TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_gate_shexp.weight", {E, FS}, &L.moe.shexp_gate));
        TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_up_shexp.weight", {E, FS}, &L.moe.shexp_up));
        TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_down_shexp.weight", {FS, E}, &L.moe.shexp_down));
      }
    } else {
      TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_gate.weight", {E, F}, &L.w_gate));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_up.weight", {E, F}, &L.w_up));
      TIERLM_RETURN_IF_ERROR(Need(file, p + "ffn_down.weight", {F, E}, &L.w_down));
    }
  }
  for (size_t l = 0; l + 1 < m->layers_.size(); ++l)  // gate-ahead: each MoE block knows the next
    if (m->layers_[l].is_moe && m->layers_[l + 1].is_moe) m->layers_[l].moe.next = &m->layers_[l + 1].moe;

  m->rope_inv_freq_.resize(static_cast<size_t>(hp.n_rot / 2));
  RopeInvFreq(hp.rope_base, hp.n_rot, m->rope_inv_freq_.data());
  // Llama 3.1-style long-context scaling ships per-frequency divisors as a tensor.
  const gguf::TensorInfo* freqs = nullptr;
  TIERLM_RETURN_IF_ERROR(Need(file, "rope_freqs.weight", {hp.n_rot / 2}, &freqs, /*optional=*/true));
  if (freqs && store) {
    std::vector<float> factors(static_cast<size_t>(hp.n_rot / 2));
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store->Acquire(*freqs));
    DequantizeRow(freqs->type, pin.data(), factors.data(), hp.n_rot / 2);
    for (size_t i = 0; i < factors.size(); ++i) {
      if (!(factors[i] > 0))
        return Status::Corruption(file.name() + ": tensor 'rope_freqs.weight' has a non-positive factor");
      m->rope_inv_freq_[i] /= factors[i];
    }
  }
  return m;
}

Status LlamaModel::Embed(const int32_t* tokens, int64_t n, float* x) {
  TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store_->Acquire(*tok_embd_));
  const int64_t row_bytes = RowBytes(tok_embd_->type, hp_.n_embd);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t id = tokens[t];
    if (id < 0 || id >= hp_.n_vocab)
      return Status::InvalidArgument("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                     std::to_string(hp_.n_vocab) + ")");
    DequantizeRow(tok_embd_->type, pin.data() + id * row_bytes, x + t * hp_.n_embd, hp_.n_embd);
  }
  return Status::Ok();
}

Status LlamaModel::Forward(std::span<const int32_t> tokens, KvCache& kv, bool all_logits, std::vector<float>* logits,
                           ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return Status::InvalidArgument("no tokens to evaluate");
  const int64_t past = kv.n_past();
  if (past + n > kv.n_ctx())
    return Status::OutOfRange("context is full: " + std::to_string(past) + " + " + std::to_string(n) +
                              " tokens exceed the context size " + std::to_string(kv.n_ctx()));
  kv::PagedKvCache& cache = kv.paged();
  // Positions recorded by a forward pass that failed are dropped first.
  if (cache.blocks().Length(KvCache::kSeq) > past) TIERLM_RETURN_IF_ERROR(cache.Truncate(KvCache::kSeq, past));
  if (evict_.mode != kv::KvEvictMode::kNone && n > evict_.prefill_chunk) {
    // Under a KV bound the prompt goes in chunks, each followed by eviction, so that no
    // more than max_tokens plus a chunk is ever held.
    std::vector<float> all, part;
    for (int64_t at = 0; at < n; at += evict_.prefill_chunk) {
      const int64_t len = std::min(evict_.prefill_chunk, n - at);
      TIERLM_RETURN_IF_ERROR(Forward(tokens.subspan(static_cast<size_t>(at), static_cast<size_t>(len)), kv, all_logits,
                                     &part, pool));
      if (all_logits) all.insert(all.end(), part.begin(), part.end());
    }
    *logits = all_logits ? std::move(all) : std::move(part);
    return Status::Ok();
  }
  TIERLM_RETURN_IF_ERROR(cache.AddTokens(KvCache::kSeq, tokens));
  single_.Clear();
  for (int64_t t = 0; t < n; ++t) single_.Add(tokens[static_cast<size_t>(t)], past + t, KvCache::kSeq, all_logits || t == n - 1);
  const Status st = Forward(single_, cache, logits, pool);
  if (!st.ok()) (void)cache.Truncate(KvCache::kSeq, cache.Computed(KvCache::kSeq));
  return st;
}

Status LlamaModel::Forward(const Batch& batch, kv::PagedKvCache& cache, std::vector<float>* logits, ThreadPool* pool,
                           std::vector<SeqFailure>* failed) {
  const int64_t n = batch.size();
  if (n == 0) return Status::InvalidArgument("no tokens to evaluate");
  if (static_cast<int64_t>(batch.pos.size()) != n || static_cast<int64_t>(batch.seq.size()) != n ||
      static_cast<int64_t>(batch.logits.size()) != n)
    return Status::InvalidArgument("batch: token, pos, seq and logits differ in length");
  // Each sequence continues exactly where its computed positions end, in order, over
  // tokens the cache has recorded.
  std::unordered_map<kv::SeqId, int64_t> next;
  const kv::KvBlockManager& blocks = cache.blocks();
  for (int64_t i = 0; i < n; ++i) {
    const kv::SeqId sq = batch.seq[static_cast<size_t>(i)];
    const int64_t p = batch.pos[static_cast<size_t>(i)];
    auto it = next.find(sq);
    const int64_t want = it == next.end() ? cache.Computed(sq) : it->second;
    if (p != want)
      return Status::InvalidArgument("batch: sequence " + std::to_string(sq) + " token " + std::to_string(i) +
                                     " is at position " + std::to_string(p) + ", expected " + std::to_string(want));
    if (p >= blocks.Length(sq))
      return Status::InvalidArgument("batch: sequence " + std::to_string(sq) + " position " + std::to_string(p) +
                                     " was not added to the KV cache (it holds " +
                                     std::to_string(blocks.Length(sq)) + ")");
    const kv::KvSlot slot = blocks.Slot(sq, p);
    if (blocks.BlockTokens(slot.block)[static_cast<size_t>(slot.offset)] != batch.token[static_cast<size_t>(i)])
      return Status::InvalidArgument("batch: sequence " + std::to_string(sq) + " position " + std::to_string(p) +
                                     ": token " + std::to_string(batch.token[static_cast<size_t>(i)]) +
                                     " differs from the one the KV cache recorded");
    next[sq] = p + 1;
  }
  if (evict_.mode != kv::KvEvictMode::kNone) {
    if (sparse_.mode != kv::KvSparseMode::kExact)
      return Status::InvalidArgument("--kv-evict and --kv-sparse do not combine: choose one");
    if (!evictor_ || evictor_->block_size() != blocks.block_size())
      evictor_ = std::make_unique<kv::KvEvictor>(evict_, static_cast<int32_t>(blocks.block_size()));
  }
  // Sparse retrieval: rows per sequence (a sequence with one row is decoding).
  std::unordered_map<kv::SeqId, int64_t> rows_of;
  if (sparse_.mode != kv::KvSparseMode::kExact) {
    for (int64_t i = 0; i < n; ++i) ++rows_of[batch.seq[static_cast<size_t>(i)]];
    cache.store().EnableSummaries(sparse_.mean_skipped);
    if (selector_summaries_ != &cache.store().summaries()) {
      selector_ = kv::MakeBlockSelector(sparse_, static_cast<int32_t>(blocks.block_size()), &cache.store().summaries());
      selector_summaries_ = &cache.store().summaries();
    }
  }
  const int64_t n_out = batch.n_logits();
  logits->assign(static_cast<size_t>(n_out * hp_.n_vocab), 0.0f);
  const AttentionShape shape = attention_shape();
  const int64_t KV = hp_.kv_dim();
  kv::PagedKvStore& store = cache.store();
  const int64_t bs = blocks.block_size();
  // Sequences whose KV could not be had, with why; their rows are masked from then on.
  std::vector<SeqFailure> lost;
  auto is_lost = [&](kv::SeqId sq) {
    return std::any_of(lost.begin(), lost.end(), [&](const SeqFailure& f) { return f.seq == sq; });
  };
  int64_t out_row = 0;
  for (int64_t start = 0; start < n; start += max_batch_) {
    const int64_t len = std::min(max_batch_, n - start);
    const int32_t* tok = batch.token.data() + start;
    const int64_t* pos = batch.pos.data() + start;
    const kv::SeqId* seq = batch.seq.data() + start;
    const uint8_t* want = batch.logits.data() + start;
    // The blocks each layer reads (every sequence's blocks up to its last position here)
    // and writes (the rows' slots), for a tiered store to pin a layer at a time.
    std::vector<kv::BlockId> read, write;
    std::unordered_map<kv::SeqId, int64_t> keys;
    for (int64_t t = 0; t < len; ++t) {
      int64_t& k = keys[seq[t]];
      k = std::max(k, pos[t] + 1);
      write.push_back(blocks.Slot(seq[t], pos[t]).block);
    }
    for (const auto& [sq, k] : keys) {
      const auto table = blocks.BlockTable(sq);
      for (auto b = table.begin(); b != table.begin() + (k + bs - 1) / bs; ++b)
        if (*b != kv::kHole) read.push_back(*b);
    }
    // Sequences that evicted: their rows skip the holes.
    std::unordered_map<kv::SeqId, std::vector<uint8_t>> holes;
    for (const auto& [sq, k] : keys) {
      if (!blocks.Evicted(sq)) continue;
      const auto table = blocks.BlockTable(sq);
      std::vector<uint8_t>& h = holes[sq];
      for (kv::BlockId b : table) h.push_back(b == kv::kHole);
    }
    std::sort(read.begin(), read.end());
    read.erase(std::unique(read.begin(), read.end()), read.end());
    std::sort(write.begin(), write.end());
    write.erase(std::unique(write.begin(), write.end()), write.end());
    size_t max_table = 0;
    for (const auto& [sq, k] : keys) max_table = std::max(max_table, blocks.BlockTable(sq).size());
    if (skip_all_.size() < max_table) skip_all_.assign(max_table, 1);

    queries_.resize(static_cast<size_t>(len));
    auto set_queries = [&] {
      for (int64_t t = 0; t < len; ++t) {
        const uint8_t* skip = nullptr;
        if (is_lost(seq[t])) skip = skip_all_.data();
        else if (auto h = holes.find(seq[t]); h != holes.end()) skip = h->second.data();
        queries_[static_cast<size_t>(t)] = {blocks.BlockTable(seq[t]).data(), pos[t] + 1, skip};
      }
    };
    set_queries();
    // Eviction policies that score blocks by attention: each row's share per block, summed
    // over layers and heads.
    const bool observe_mass = evictor_ && evictor_->wants_attention();
    std::vector<uint8_t> mass_row(static_cast<size_t>(len), 0);
    const int64_t mass_stride = static_cast<int64_t>(max_table);
    if (observe_mass) {
      // A prompt's last `window` rows only (SnapKV's observation window; every decode row):
      // scoring every prompt row would read its keys once per row again.
      for (int64_t t = 0; t < len; ++t)
        mass_row[static_cast<size_t>(t)] = !is_lost(seq[t]) && pos[t] >= next[seq[t]] - evict_.window;
      mass_.assign(static_cast<size_t>(len * mass_stride), 0.0);
    }
    // Sparse retrieval: the decode rows (a sequence's only row in the batch) of the layers
    // at and above dense_layers read the blocks their selector picks.
    std::vector<uint8_t> sparse_row(static_cast<size_t>(len), 0);
    if (selector_)
      for (int64_t t = 0; t < len; ++t) sparse_row[static_cast<size_t>(t)] = rows_of[seq[t]] == 1;
    if (row_skip_.size() < static_cast<size_t>(len)) row_skip_.resize(static_cast<size_t>(len));
    // The blocks layer l reads when some rows are sparse: the exact rows' and the selected.
    std::vector<kv::BlockId> layer_read;
    auto select = [&](int64_t l, const float* q) -> bool {
      bool any = false;
      for (int64_t t = 0; t < len; ++t) {
        if (!sparse_row[static_cast<size_t>(t)] || is_lost(seq[t])) continue;
        PagedQuery& row = queries_[static_cast<size_t>(t)];
        const int64_t nb = (row.n_keys + bs - 1) / bs;
        std::vector<uint8_t>& mask = row_skip_[static_cast<size_t>(t)];
        mask.resize(static_cast<size_t>(nb * hp_.n_head_kv));
        kv::SelectionQuery sq{l, q + t * hp_.q_dim(), hp_.n_head, blocks.BlockTable(seq[t]).first(static_cast<size_t>(nb)),
                              row.n_keys, pool};
        if (!selector_->Select(sq, mask.data())) continue;
        row.skip = mask.data();
        row.skip_heads = static_cast<int32_t>(hp_.n_head_kv);
        row.mean_skipped = sparse_.mean_skipped;
        any = true;
      }
      if (!any || !store.tiered()) return any;
      layer_read.clear();
      for (int64_t t = 0; t < len; ++t) {
        if (is_lost(seq[t])) continue;
        const PagedQuery& row = queries_[static_cast<size_t>(t)];
        const int64_t nb = (row.n_keys + bs - 1) / bs;
        for (int64_t b = 0; b < nb; ++b) {
          bool needed = row.skip_heads == 0;
          for (int64_t g = 0; g < row.skip_heads && !needed; ++g) needed = !row.Skips(b, g);
          if (needed) layer_read.push_back(row.blocks[b]);
        }
      }
      std::sort(layer_read.begin(), layer_read.end());
      layer_read.erase(std::unique(layer_read.begin(), layer_read.end()), layer_read.end());
      return true;
    };
    auto count_reads = [&] {
      for (int64_t t = 0; t < len; ++t) {
        const PagedQuery& row = queries_[static_cast<size_t>(t)];
        if (is_lost(seq[t])) continue;
        const int64_t nb = (row.n_keys + bs - 1) / bs;
        read_stats_.total += static_cast<uint64_t>(nb * hp_.n_head_kv);
        for (int64_t b = 0; b < nb; ++b)
          for (int64_t g = 0; g < hp_.n_head_kv; ++g) read_stats_.read += !row.Skips(b, g);
      }
    };
    if (store.tiered()) store.PrefetchLayer(0, read);
    // Paged cache: every row's keys and values into its sequence's block, then each row
    // attends over its own sequence.
    auto attend = [&](int64_t l, const float* q, const float* k, const float* v, float* o) -> Status {
      bool sparse = false;
      if (selector_) {
        set_queries();  // the previous layer's selection off
        if (l >= sparse_.dense_layers) sparse = select(l, q);
      }
      if (store.tiered()) {
        const std::vector<kv::BlockId>& layer_blocks = sparse ? layer_read : read;
        std::vector<kv::BlockFailure> bad;
        store.PinLayer(l, layer_blocks, write, &bad);
        for (const kv::BlockFailure& f : bad)
          for (const auto& [sq, nk] : keys) {
            const auto table = blocks.BlockTable(sq);
            const auto end = table.begin() + (nk + bs - 1) / bs;
            if (is_lost(sq) || std::find(table.begin(), end, f.block) == end) continue;
            lost.push_back({sq, f.status.WithContext("kv: sequence " + std::to_string(sq) + ", layer " +
                                                     std::to_string(l) + ", block " + std::to_string(f.block))});
          }
        if (!bad.empty()) {
          // A lost sequence's rows skip everything; the others keep their selection.
          for (int64_t t = 0; t < len; ++t)
            if (is_lost(seq[t])) {
              queries_[static_cast<size_t>(t)] = {blocks.BlockTable(seq[t]).data(), pos[t] + 1, skip_all_.data()};
              mass_row[static_cast<size_t>(t)] = 0;
            }
        }
        // The next layer's blocks: when this layer was sparse, its selection predicts the
        // next one's (what it misses is read when the next layer pins).
        store.PrefetchLayer(l + 1, sparse && l + 1 >= sparse_.dense_layers ? layer_read : read);
      }
      for (int64_t t = 0; t < len; ++t)
        if (!is_lost(seq[t])) store.Write(l, blocks.Slot(seq[t], pos[t]), k + t * KV, v + t * KV);
      count_reads();
      PagedAttention(shape, store.Layer(l), queries_, q, o, pool);
      if (observe_mass)
        AddAttentionBlockMass(shape, store.Layer(l), queries_, mass_row.data(), q, mass_.data(), mass_stride, pool);
      if (observer_) observer_(l, store.Layer(l), queries_, q);
      store.UnpinLayer();
      return Status::Ok();
    };
    float* out = logits->data() + out_row * hp_.n_vocab;
    // Policies that score tokens by surprisal need every row's logits.
    const bool observe_logits = evictor_ && evictor_->wants_surprisal();
    std::vector<uint8_t> want_all;
    std::vector<float> all_logits;
    if (observe_logits) {
      want_all.assign(static_cast<size_t>(len), 1);
      all_logits.resize(static_cast<size_t>(len * hp_.n_vocab));
    }
    const Status st = observe_logits ? ForwardRows(tok, pos, len, attend, want_all.data(), all_logits.data(), pool)
                                     : ForwardRows(tok, pos, len, attend, want, out, pool);
    store.UnpinLayer();
    TIERLM_RETURN_IF_ERROR(st);
    if (observe_logits) {
      int64_t r = 0;
      for (int64_t t = 0; t < len; ++t) {
        const float* row = all_logits.data() + t * hp_.n_vocab;
        if (want[t]) std::copy_n(row, hp_.n_vocab, out + (r++) * hp_.n_vocab);
        if (!is_lost(seq[t]))
          evictor_->ObserveLogits(seq[t], pos[t], tok[t], std::span<const float>(row, static_cast<size_t>(hp_.n_vocab)));
      }
    }
    if (observe_mass) {
      // A row's shares sum to one: every layer and query head added one.
      const double norm = 1.0 / static_cast<double>(hp_.n_layer * hp_.n_head);
      std::vector<float> share;
      for (int64_t t = 0; t < len; ++t) {
        if (!mass_row[static_cast<size_t>(t)] || is_lost(seq[t])) continue;
        const int64_t nb = (pos[t] + 1 + bs - 1) / bs;
        share.resize(static_cast<size_t>(nb));
        for (int64_t b = 0; b < nb; ++b)
          share[static_cast<size_t>(b)] = static_cast<float>(mass_[static_cast<size_t>(t * mass_stride + b)] * norm);
        evictor_->ObserveAttention(seq[t], pos[t], share);
      }
    }
    for (int64_t t = 0; t < len; ++t) {
      out_row += want[t] != 0;
      if (!is_lost(seq[t])) cache.SetComputed(seq[t], pos[t] + 1);
    }
  }
  if (evictor_) {
    // Each sequence of the batch back under its bound.
    for (const auto& [sq, unused] : next) {
      (void)unused;
      if (is_lost(sq)) continue;
      TIERLM_RETURN_IF_ERROR(evictor_->Enforce(cache, sq).status());
    }
    evictor_->Prune(blocks);
  }
  if (!lost.empty()) {
    // Failed rows' logits are zeros, whatever the masked attention left in them.
    int64_t r = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (batch.logits[static_cast<size_t>(i)] == 0) continue;
      if (is_lost(batch.seq[static_cast<size_t>(i)]))
        std::fill_n(logits->data() + r * hp_.n_vocab, hp_.n_vocab, 0.0f);
      ++r;
    }
    if (!failed) return lost.front().status;
    failed->insert(failed->end(), lost.begin(), lost.end());
  }
  return Status::Ok();
}

void LlamaModel::set_kv_evict(const kv::KvEvictOptions& options) {
  evict_ = options;
  evictor_.reset();  // made by the next Forward, for its cache's block size
}

void LlamaModel::set_kv_sparse(const kv::KvSparseOptions& options) {
  sparse_ = options;
  selector_.reset();
  selector_summaries_ = nullptr;
}

AttentionShape LlamaModel::attention_shape() const {
  return {hp_.n_head, hp_.n_head_kv, hp_.head_dim, 1.0f / std::sqrt(static_cast<float>(hp_.head_dim))};
}

Status LlamaModel::ForwardRows(const int32_t* tokens, const int64_t* pos, int64_t n, const AttendFn& attend,
                               const uint8_t* want_logits, float* logits_out, ThreadPool* pool) {
  const ModelHParams& hp = hp_;
  const int64_t E = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), F = hp.n_ff, HD = hp.head_dim;
  auto grow = [](std::vector<float>& v, int64_t size) {
    if (static_cast<int64_t>(v.size()) < size) v.resize(static_cast<size_t>(size));
  };
  grow(x_, n * E);
  grow(xn_, n * E);
  grow(q_, n * Q);
  grow(k_, n * KV);
  grow(v_, n * KV);
  grow(attn_, n * std::max(Q, E));
  grow(gate_, n * F);
  grow(up_, n * F);
  grow(norm_w_, std::max({E, Q, KV}));

  TIERLM_RETURN_IF_ERROR(Embed(tokens, n, x_.data()));

  // fn(t) for every token t < n, split over the threads when there are enough tokens to pay
  // for the hand-off. Each token's values are computed on their own, in the same
  // operations, whichever thread runs them.
  auto per_token = [&](auto&& fn) {
    if (pool == nullptr || pool->size() == 1 || n < 4) {
      for (int64_t t = 0; t < n; ++t) fn(t);
      return;
    }
    pool->ParallelFor(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) fn(t);
    });
  };

  // Loads a small 1-D tensor (norm weight or bias) as f32 into norm_w_.
  auto load_vec = [&](const gguf::TensorInfo* t) -> Result<const float*> {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store_->Acquire(*t));
    DequantizeRow(t->type, pin.data(), norm_w_.data(), t->ne[0]);
    return static_cast<const float*>(norm_w_.data());
  };
  auto rms_norm_rows = [&](const gguf::TensorInfo* w) -> Status {
    TIERLM_ASSIGN_OR_RETURN(const float* wf, load_vec(w));
    per_token([&](int64_t t) { RmsNorm(x_.data() + t * E, wf, E, hp.rms_eps, xn_.data() + t * E); });
    return Status::Ok();
  };
  auto add_bias = [&](const gguf::TensorInfo* b, float* y, int64_t dim) -> Status {
    if (!b) return Status::Ok();
    TIERLM_ASSIGN_OR_RETURN(const float* bf, load_vec(b));
    per_token([&](int64_t t) { Add(y + t * dim, bf, y + t * dim, dim); });
    return Status::Ok();
  };
  // RMSNorm of each w->ne[0]-wide piece of each token's `dim` values, in place.
  auto norm_in_place = [&](const gguf::TensorInfo* w, float* y, int64_t dim) -> Status {
    TIERLM_ASSIGN_OR_RETURN(const float* wf, load_vec(w));
    const int64_t width = w->ne[0];
    per_token([&](int64_t t) {
      for (int64_t i = t * dim; i < (t + 1) * dim; i += width) RmsNorm(y + i, wf, width, hp.rms_eps, y + i);
    });
    return Status::Ok();
  };
  auto matmul = [&](const gguf::TensorInfo* w, const float* x, float* y) -> Status {
    TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store_->Acquire(*w));
    Matmul(AsMatrix(*w, pin), x, w->ne[0], n, y, w->ne[1], pool);
    return Status::Ok();
  };

  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const LayerTensors& L = layers_[static_cast<size_t>(l)];
    TIERLM_RETURN_IF_ERROR(rms_norm_rows(L.attn_norm));
    TIERLM_RETURN_IF_ERROR(matmul(L.wq, xn_.data(), q_.data()));
    TIERLM_RETURN_IF_ERROR(matmul(L.wk, xn_.data(), k_.data()));
    TIERLM_RETURN_IF_ERROR(matmul(L.wv, xn_.data(), v_.data()));
    TIERLM_RETURN_IF_ERROR(add_bias(L.bq, q_.data(), Q));
    TIERLM_RETURN_IF_ERROR(add_bias(L.bk, k_.data(), KV));
    TIERLM_RETURN_IF_ERROR(add_bias(L.bv, v_.data(), KV));
    if (L.q_norm) {  // QK-norm: per head (width = the weight's length) or the whole projection
      TIERLM_RETURN_IF_ERROR(norm_in_place(L.q_norm, q_.data(), Q));
      TIERLM_RETURN_IF_ERROR(norm_in_place(L.k_norm, k_.data(), KV));
    }
    per_token([&](int64_t t) {
      Rope(q_.data() + t * Q, hp.n_head, HD, hp.n_rot, pos[t], hp.rope_freq_scale, rope_inv_freq_.data(),
           hp.rope_style == RopeStyle::kNeox);
      Rope(k_.data() + t * KV, hp.n_head_kv, HD, hp.n_rot, pos[t], hp.rope_freq_scale, rope_inv_freq_.data(),
           hp.rope_style == RopeStyle::kNeox);
    });
    TIERLM_RETURN_IF_ERROR(attend(l, q_.data(), k_.data(), v_.data(), attn_.data()));
    TIERLM_RETURN_IF_ERROR(matmul(L.wo, attn_.data(), xn_.data()));
    per_token([&](int64_t t) { Add(x_.data() + t * E, xn_.data() + t * E, x_.data() + t * E, E); });

    TIERLM_RETURN_IF_ERROR(rms_norm_rows(L.ffn_norm));
    if (L.is_moe) {
      TIERLM_RETURN_IF_ERROR(moe_ffn_.Forward(store_, L.moe, hp, xn_.data(), n, attn_.data(), pool));
      std::copy_n(attn_.data(), n * E, xn_.data());
    } else {
      TIERLM_RETURN_IF_ERROR(matmul(L.w_gate, xn_.data(), gate_.data()));
      TIERLM_RETURN_IF_ERROR(matmul(L.w_up, xn_.data(), up_.data()));
      per_token([&](int64_t t) { SwiGlu(gate_.data() + t * F, up_.data() + t * F, gate_.data() + t * F, F); });
      TIERLM_RETURN_IF_ERROR(matmul(L.w_down, gate_.data(), xn_.data()));
    }
    per_token([&](int64_t t) { Add(x_.data() + t * E, xn_.data() + t * E, x_.data() + t * E, E); });
  }

  if (!logits_out) return Status::Ok();
  // Final norm and classifier for the rows that want logits, in order.
  int64_t rows = 0;
  for (int64_t t = 0; t < n; ++t) rows += want_logits[t] != 0;
  if (rows == 0) return Status::Ok();
  TIERLM_ASSIGN_OR_RETURN(const float* wf, load_vec(output_norm_));
  for (int64_t t = 0, r = 0; t < n; ++t)
    if (want_logits[t]) RmsNorm(x_.data() + t * E, wf, E, hp.rms_eps, xn_.data() + (r++) * E);
  TIERLM_ASSIGN_OR_RETURN(TensorPin pin, store_->Acquire(*output_));
  Matmul(AsMatrix(*output_, pin), xn_.data(), E, rows, logits_out, hp.n_vocab, pool);
  return Status::Ok();
}

}  // namespace tierlm
