#include "model/hparams.h"

namespace tierlm {

const char* ArchName(Arch a) {
  switch (a) {
    case Arch::kLlama: return "llama";
    case Arch::kQwen2: return "qwen2";
    case Arch::kQwen2Moe: return "qwen2moe";
    case Arch::kQwen3Moe: return "qwen3moe";
    case Arch::kOlmoe: return "olmoe";
  }
  return "?";
}

Result<ModelHParams> ModelHParams::FromGguf(const gguf::GgufFile& f) {
  ModelHParams hp;
  TIERLM_ASSIGN_OR_RETURN(hp.arch_name, f.GetString("general.architecture"));
  if (hp.arch_name == "llama") {
    hp.arch = Arch::kLlama;
    hp.rope_style = RopeStyle::kNormal;
  } else if (hp.arch_name == "qwen2") {
    hp.arch = Arch::kQwen2;
    hp.rope_style = RopeStyle::kNeox;
    hp.qkv_bias = true;
  } else if (hp.arch_name == "qwen2moe") {
    // llama.cpp (models/qwen2moe.cpp): Q/K/V biases, neox RoPE, top-k weights as the
    // softmax gave them (not renormalized), plus a sigmoid-gated shared expert.
    hp.arch = Arch::kQwen2Moe;
    hp.rope_style = RopeStyle::kNeox;
    hp.qkv_bias = true;
    hp.expert_weights_norm = false;
  } else if (hp.arch_name == "qwen3moe") {
    // models/qwen3moe.cpp: per-head Q/K RMSNorm before neox RoPE, no biases, renormalized top-k.
    hp.arch = Arch::kQwen3Moe;
    hp.rope_style = RopeStyle::kNeox;
    hp.qk_norm = QkNorm::kPerHead;
    hp.expert_weights_norm = true;
  } else if (hp.arch_name == "olmoe") {
    // models/olmoe.cpp: Q/K RMSNorm over the whole projection, neox RoPE, top-k not renormalized.
    hp.arch = Arch::kOlmoe;
    hp.rope_style = RopeStyle::kNeox;
    hp.qk_norm = QkNorm::kWhole;
    hp.expert_weights_norm = false;
  } else {
    return Status::Unsupported(f.name() + ": architecture '" + hp.arch_name +
                               "' is not supported (supported: llama, qwen2, qwen2moe, qwen3moe, olmoe)");
  }
  const bool moe_arch = hp.arch == Arch::kQwen2Moe || hp.arch == Arch::kQwen3Moe || hp.arch == Arch::kOlmoe;
  const std::string a = hp.arch_name + ".";
  auto need = [&](const std::string& key, int64_t lo, int64_t hi, int64_t* out) -> Status {
    auto r = f.GetI64(a + key);
    if (!r.ok()) return r.status();
    if (*r < lo || *r > hi)
      return Status::Corruption(f.name() + ": metadata key '" + a + key + "' = " + std::to_string(*r) +
                                " is outside the sane range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    *out = *r;
    return Status::Ok();
  };
  auto opt = [&](const std::string& key, int64_t dflt, int64_t lo, int64_t hi, int64_t* out) -> Status {
    if (!f.Find(a + key)) {
      *out = dflt;
      return Status::Ok();
    }
    return need(key, lo, hi, out);
  };
  constexpr int64_t kBig = int64_t{1} << 24;
  TIERLM_RETURN_IF_ERROR(need("embedding_length", 1, kBig, &hp.n_embd));
  TIERLM_RETURN_IF_ERROR(need("block_count", 1, 4096, &hp.n_layer));
  TIERLM_RETURN_IF_ERROR(need("attention.head_count", 1, 65536, &hp.n_head));
  TIERLM_RETURN_IF_ERROR(opt("attention.head_count_kv", hp.n_head, 1, hp.n_head, &hp.n_head_kv));
  // MoE files that give the expert width may leave the dense width out (llama.cpp reads it
  // as optional); dense models need it.
  const bool ff_optional = (hp.arch == Arch::kQwen2Moe || hp.arch == Arch::kQwen3Moe) &&
                           f.Find(a + "expert_feed_forward_length") != nullptr;
  if (ff_optional)
    TIERLM_RETURN_IF_ERROR(opt("feed_forward_length", 0, 0, kBig, &hp.n_ff));
  else
    TIERLM_RETURN_IF_ERROR(need("feed_forward_length", 1, kBig, &hp.n_ff));
  TIERLM_RETURN_IF_ERROR(opt("context_length", 2048, 1, int64_t{1} << 31, &hp.n_ctx_train));
  if (hp.n_head % hp.n_head_kv != 0)
    return Status::Corruption(f.name() + ": head_count " + std::to_string(hp.n_head) +
                              " is not a multiple of head_count_kv " + std::to_string(hp.n_head_kv));
  if (hp.n_embd % hp.n_head != 0 && !f.Find(a + "attention.key_length"))
    return Status::Corruption(f.name() + ": embedding_length " + std::to_string(hp.n_embd) +
                              " is not a multiple of head_count " + std::to_string(hp.n_head));
  TIERLM_RETURN_IF_ERROR(opt("attention.key_length", hp.n_embd / hp.n_head, 1, 65536, &hp.head_dim));
  int64_t v_len = hp.head_dim;
  TIERLM_RETURN_IF_ERROR(opt("attention.value_length", hp.head_dim, 1, 65536, &v_len));
  if (v_len != hp.head_dim)
    return Status::Unsupported(f.name() + ": key_length != value_length is not supported");
  if (hp.head_dim % 2 != 0) return Status::Corruption(f.name() + ": head dimension must be even");
  TIERLM_RETURN_IF_ERROR(opt("rope.dimension_count", hp.head_dim, 2, hp.head_dim, &hp.n_rot));
  if (hp.n_rot % 2 != 0) return Status::Corruption(f.name() + ": rope.dimension_count must be even");
  TIERLM_RETURN_IF_ERROR(opt("expert_count", 0, 0, 4096, &hp.n_expert));
  TIERLM_RETURN_IF_ERROR(opt("expert_used_count", 0, 0, 4096, &hp.n_expert_used));
  if (moe_arch && hp.n_expert == 0)
    return Status::Corruption(f.name() + ": architecture '" + hp.arch_name + "' needs experts but " + a +
                              "expert_count is missing or 0");
  if (hp.n_expert > 0 && hp.n_expert_used == 0)
    return Status::Corruption(f.name() + ": " + a + "expert_count is " + std::to_string(hp.n_expert) +
                              " but " + a + "expert_used_count is missing or 0");
  if (hp.n_expert_used > hp.n_expert)
    return Status::Corruption(f.name() + ": " + a + "expert_used_count = " + std::to_string(hp.n_expert_used) +
                              " exceeds " + a + "expert_count = " + std::to_string(hp.n_expert));
  if (hp.n_expert > 0) {
    // The routed experts' width: llama (Mixtral) uses feed_forward_length; qwen2moe and
    // qwen3moe have expert_feed_forward_length (llama.cpp falls back to n_ff / n_used).
    hp.n_ff_exp = hp.n_ff;
    if (hp.arch == Arch::kQwen2Moe || hp.arch == Arch::kQwen3Moe) {
      if (f.Find(a + "expert_feed_forward_length")) {
        TIERLM_RETURN_IF_ERROR(need("expert_feed_forward_length", 1, kBig, &hp.n_ff_exp));
      } else {
        hp.n_ff_exp = hp.n_ff / hp.n_expert_used;
        if (hp.n_ff_exp == 0)
          return Status::Corruption(f.name() + ": " + a + "expert_feed_forward_length is missing and " + a +
                                    "feed_forward_length / expert_used_count is 0");
      }
    }
    if (hp.arch == Arch::kQwen2Moe) {
      TIERLM_RETURN_IF_ERROR(opt("expert_shared_feed_forward_length", hp.n_ff, 0, kBig, &hp.n_ff_shexp));
      if (hp.n_ff_shexp == 0)
        return Status::Corruption(f.name() + ": " + a + "expert_shared_feed_forward_length is missing or 0 (" +
                                  "qwen2moe has a shared expert)");
    }
  }
  if (hp.qk_norm != QkNorm::kNone && hp.n_rot != hp.head_dim)
    return Status::Unsupported(f.name() + ": " + a + "rope.dimension_count " + std::to_string(hp.n_rot) +
                               " != head dimension " + std::to_string(hp.head_dim) + " is not supported for " +
                               hp.arch_name);

  TIERLM_ASSIGN_OR_RETURN(hp.rms_eps, f.GetF32Or(a + "attention.layer_norm_rms_epsilon", 1e-5f));
  if (!(hp.rms_eps > 0 && hp.rms_eps < 1))
    return Status::Corruption(f.name() + ": layer_norm_rms_epsilon must be in (0, 1)");
  TIERLM_ASSIGN_OR_RETURN(hp.rope_base, f.GetF32Or(a + "rope.freq_base", 10000.0f));
  if (!(hp.rope_base > 1)) return Status::Corruption(f.name() + ": rope.freq_base must be > 1");
  TIERLM_ASSIGN_OR_RETURN(std::string scaling, f.GetStringOr(a + "rope.scaling.type", "none"));
  float scale_factor = 1.0f;
  if (scaling == "linear") {
    TIERLM_ASSIGN_OR_RETURN(scale_factor, f.GetF32Or(a + "rope.scaling.factor", 1.0f));
  } else if (scaling == "none") {
    TIERLM_ASSIGN_OR_RETURN(scale_factor, f.GetF32Or(a + "rope.scale_linear", 1.0f));
  } else {
    // YaRN and llama3-style frequency tables change the rotation: refuse rather than be wrong.
    TIERLM_ASSIGN_OR_RETURN(float factor, f.GetF32Or(a + "rope.scaling.factor", 1.0f));
    if (factor != 1.0f)
      return Status::Unsupported(f.name() + ": rope scaling type '" + scaling + "' is not supported");
  }
  if (!(scale_factor > 0)) return Status::Corruption(f.name() + ": rope scaling factor must be positive");
  hp.rope_freq_scale = 1.0f / scale_factor;
  if (f.Find(a + "vocab_size")) {
    TIERLM_RETURN_IF_ERROR(need("vocab_size", 1, kBig, &hp.n_vocab));
  } else {
    const gguf::Value* toks = f.Find("tokenizer.ggml.tokens");
    if (!toks || toks->type != gguf::ValueType::kArray)
      return Status::NotFound(f.name() + ": required metadata key 'tokenizer.ggml.tokens' is missing");
    hp.n_vocab = static_cast<int64_t>(toks->items.size());
  }
  return hp;
}

}  // namespace tierlm
