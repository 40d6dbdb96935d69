#include "synth/synth_model.h"

#include <cmath>
#include <cstring>

#include "format/gguf_writer.h"
#include "kernels/quant.h"
#include "synth/synth_vocab.h"

namespace tierlm {
namespace {

// SplitMix64: seeds independent streams per tensor and per row.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Approximately normal values (sum of four uniforms, rescaled): fast and deterministic.
void FillNormal(uint64_t seed, float mean, float stddev, float* out, int64_t n) {
  uint64_t s = Mix(seed);
  constexpr float kScale = 1.7320508f / 2147483648.0f;  // sqrt(3) / 2^31: unit variance for 4 uniforms
  for (int64_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    const int64_t a = static_cast<int32_t>(s), b = static_cast<int32_t>(s >> 32);
    uint64_t t = Mix(s);
    const int64_t c = static_cast<int32_t>(t), d = static_cast<int32_t>(t >> 32);
    out[i] = mean + stddev * static_cast<float>(a + b + c + d) * kScale * 0.5f;
  }
}

// Residual-branch output scale of the MoE presets (SynthSpec::residual_scale).
constexpr float kMoeResidualScale = 0.1f;

struct TensorPlan {
  std::string name;
  std::vector<int64_t> ne;
  int64_t layer;
  float mean, stddev;
  bool ramp = false;  // values 1, 1.5, 2, ... instead of random
};

}  // namespace

std::optional<SynthType> ParseSynthType(const std::string& name) {
  std::string n;
  for (char c : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "f32") return SynthType::kF32;
  if (n == "f16") return SynthType::kF16;
  if (n == "bf16") return SynthType::kBF16;
  if (n == "q8_0") return SynthType::kQ8_0;
  if (n == "q4_0") return SynthType::kQ4_0;
  if (n == "q4_k_m" || n == "q4_k") return SynthType::kQ4_K_M;
  return std::nullopt;
}

const char* SynthTypeName(SynthType t) {
  switch (t) {
    case SynthType::kF32: return "F32";
    case SynthType::kF16: return "F16";
    case SynthType::kBF16: return "BF16";
    case SynthType::kQ8_0: return "Q8_0";
    case SynthType::kQ4_0: return "Q4_0";
    case SynthType::kQ4_K_M: return "Q4_K_M";
  }
  return "?";
}

std::vector<std::string> SynthPresetNames() {
  return {"tiny",          "small",         "tinyllama-1.1b", "llama2-7b",     "mistral-7b",
          "qwen2-0.5b",    "qwen2-tiny",    "moe-tiny",       "mixtral-8x7b",  "tiny-rope-freqs",
          "qwen3-30b-a3b", "olmoe-1b-7b",   "qwen1.5-moe-a2.7b", "qwen3moe-tiny", "qwen2moe-tiny",
          "olmoe-tiny"};
}

std::optional<SynthSpec> SynthPreset(const std::string& name, const std::string& arch) {
  SynthSpec s;
  s.name = name;
  s.arch = arch.empty() ? "llama" : arch;
  if (name == "tiny") {
    // Small enough to write and run in a fraction of a second.
    s.n_vocab = 512; s.n_embd = 256; s.n_layer = 4; s.n_head = 8; s.n_head_kv = 4; s.n_ff = 768; s.n_ctx = 512;
  } else if (name == "small") {
    s.n_vocab = 4096; s.n_embd = 512; s.n_layer = 8; s.n_head = 8; s.n_head_kv = 4; s.n_ff = 1536; s.n_ctx = 2048;
  } else if (name == "tinyllama-1.1b") {
    s.n_vocab = 32000; s.n_embd = 2048; s.n_layer = 22; s.n_head = 32; s.n_head_kv = 4; s.n_ff = 5632; s.n_ctx = 2048;
  } else if (name == "llama2-7b") {
    s.n_vocab = 32000; s.n_embd = 4096; s.n_layer = 32; s.n_head = 32; s.n_head_kv = 32; s.n_ff = 11008; s.n_ctx = 4096;
  } else if (name == "mistral-7b") {
    s.n_vocab = 32000; s.n_embd = 4096; s.n_layer = 32; s.n_head = 32; s.n_head_kv = 8; s.n_ff = 14336; s.n_ctx = 32768;
    s.rope_base = 1000000.0f;
  } else if (name == "qwen2-0.5b") {
    s.arch = "qwen2";
    s.n_vocab = 151936; s.n_embd = 896; s.n_layer = 24; s.n_head = 14; s.n_head_kv = 2; s.n_ff = 4864; s.n_ctx = 32768;
    s.rope_base = 1000000.0f; s.rms_eps = 1e-6f; s.tied_output = true;
  } else if (name == "qwen2-tiny") {
    s.arch = "qwen2";
    s.n_vocab = 512; s.n_embd = 256; s.n_layer = 2; s.n_head = 8; s.n_head_kv = 2; s.n_ff = 512; s.n_ctx = 512;
    s.rope_base = 1000000.0f; s.rms_eps = 1e-6f;
  } else if (name == "tiny-rope-freqs") {
    s.n_vocab = 512; s.n_embd = 256; s.n_layer = 4; s.n_head = 8; s.n_head_kv = 4; s.n_ff = 768; s.n_ctx = 512;
    s.rope_base = 500000.0f; s.rope_freqs = true;
  } else if (name == "moe-tiny") {
    s.n_vocab = 512; s.n_embd = 256; s.n_layer = 4; s.n_head = 8; s.n_head_kv = 4; s.n_ff = 512; s.n_ctx = 512;
    s.n_expert = 8; s.n_expert_used = 2;
  } else if (name == "mixtral-8x7b") {
    s.n_vocab = 32000; s.n_embd = 4096; s.n_layer = 32; s.n_head = 32; s.n_head_kv = 8; s.n_ff = 14336; s.n_ctx = 32768;
    s.rope_base = 1000000.0f; s.n_expert = 8; s.n_expert_used = 2; s.residual_scale = kMoeResidualScale;
  } else if (name == "qwen3-30b-a3b" || name == "qwen3moe-tiny") {
    // Qwen3-30B-A3B: q_dim 32 x 128 = 4096 != n_embd 2048 (attention.key_length).
    s.arch = "qwen3moe";
    s.n_vocab = 151936; s.n_embd = 2048; s.n_layer = 48; s.n_head = 32; s.n_head_kv = 4; s.head_dim = 128;
    s.n_ff = 6144; s.n_ctx = 40960; s.rope_base = 1000000.0f; s.rms_eps = 1e-6f;
    s.n_expert = 128; s.n_expert_used = 8; s.n_ff_exp = 768; s.residual_scale = kMoeResidualScale;
    if (name == "qwen3moe-tiny") {  // same features, small: head_dim 64 != n_embd / n_head 32
      s.n_vocab = 512; s.n_embd = 256; s.n_layer = 4; s.n_head = 8; s.n_head_kv = 2; s.head_dim = 64;
      s.n_ff = 768; s.n_ctx = 512; s.n_expert = 16; s.n_expert_used = 4; s.n_ff_exp = 128;
    }
  } else if (name == "olmoe-1b-7b" || name == "olmoe-tiny") {
    s.arch = "olmoe";
    s.n_vocab = 50304; s.n_embd = 2048; s.n_layer = 16; s.n_head = 16; s.n_head_kv = 16; s.n_ff = 1024;
    s.n_ctx = 4096; s.rope_base = 10000.0f; s.rms_eps = 1e-5f;
    s.n_expert = 64; s.n_expert_used = 8; s.residual_scale = kMoeResidualScale;
    if (name == "olmoe-tiny") {
      s.n_vocab = 512; s.n_embd = 256; s.n_layer = 4; s.n_head = 8; s.n_head_kv = 8; s.n_ff = 128; s.n_ctx = 512;
      s.n_expert = 16; s.n_expert_used = 4;
    }
  } else if (name == "qwen1.5-moe-a2.7b" || name == "qwen2moe-tiny") {
    s.arch = "qwen2moe";
    s.n_vocab = 151936; s.n_embd = 2048; s.n_layer = 24; s.n_head = 16; s.n_head_kv = 16; s.n_ff = 5632;
    s.n_ctx = 8192; s.rope_base = 1000000.0f; s.rms_eps = 1e-6f;
    s.n_expert = 60; s.n_expert_used = 4; s.n_ff_exp = 1408; s.n_ff_shexp = 5632;
    s.residual_scale = kMoeResidualScale;
    if (name == "qwen2moe-tiny") {
      s.n_vocab = 512; s.n_embd = 256; s.n_layer = 4; s.n_head = 8; s.n_head_kv = 4; s.n_ff = 512; s.n_ctx = 512;
      s.n_expert = 8; s.n_expert_used = 2; s.n_ff_exp = 128; s.n_ff_shexp = 256;
    }
  } else {
    return std::nullopt;
  }
  return s;
}

GgmlType SynthTensorType(SynthType t, const std::string& name, int64_t layer, int64_t n_layer, int64_t n_in) {
  auto ends = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
  };
  if (ends("norm.weight") || ends(".bias") || ends("ffn_gate_inp.weight") || ends("ffn_gate_inp_shexp.weight") ||
      name == "rope_freqs.weight")
    return GgmlType::kF32;
  GgmlType want = GgmlType::kF32;
  switch (t) {
    case SynthType::kF32: want = GgmlType::kF32; break;
    case SynthType::kF16: want = GgmlType::kF16; break;
    case SynthType::kBF16: want = GgmlType::kBF16; break;
    case SynthType::kQ8_0: want = GgmlType::kQ8_0; break;
    case SynthType::kQ4_0:
      want = name == "output.weight" ? GgmlType::kQ6_K : GgmlType::kQ4_0;
      break;
    case SynthType::kQ4_K_M: {
      // llama-quantize's Q4_K_M: q6_K for the classifier and, in the first and last
      // eighth of the layers and every third layer between, for attn_v and ffn_down.
      const bool more_bits =
          layer >= 0 && (layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2);
      if (name == "output.weight") want = GgmlType::kQ6_K;
      else if ((ends("attn_v.weight") || ends("ffn_down.weight")) && more_bits) want = GgmlType::kQ6_K;
      else want = GgmlType::kQ4_K;
      break;
    }
  }
  // Rows that the block size does not divide fall back to a type that fits.
  if (n_in % TypeTraits(want).block_size != 0) want = n_in % 32 == 0 ? GgmlType::kQ8_0 : GgmlType::kF16;
  return want;
}

Status WriteSynthModel(const SynthSpec& s, SynthType type, uint64_t seed, const std::string& path, ThreadPool* pool,
                       const ProgressFn& progress) {
  const bool moe_arch = s.arch == "qwen2moe" || s.arch == "qwen3moe" || s.arch == "olmoe";
  if (s.arch != "llama" && s.arch != "qwen2" && !moe_arch)
    return Status::InvalidArgument("synth: architecture '" + s.arch +
                                   "' is not supported (llama, qwen2, qwen2moe, qwen3moe, olmoe)");
  if (s.n_vocab < 260) return Status::InvalidArgument("synth: the vocabulary needs at least 260 tokens");
  const int64_t HD = s.head_dim > 0 ? s.head_dim : (s.n_head > 0 ? s.n_embd / s.n_head : 0);
  if (s.n_head <= 0 || s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0 || HD % 2 != 0 || HD == 0 ||
      (s.head_dim == 0 && s.n_embd % s.n_head != 0))
    return Status::InvalidArgument("synth: heads must divide the embedding and key/value heads the heads");
  if (s.head_dim > 0 && s.arch != "qwen3moe" && s.head_dim * s.n_head != s.n_embd)
    return Status::InvalidArgument("synth: a head dimension other than n_embd / n_head needs arch qwen3moe");
  if (s.arch == "olmoe" && s.n_head_kv != s.n_head)
    return Status::InvalidArgument("synth: olmoe normalizes K over n_embd values: key/value heads must equal heads");
  if ((s.arch == "qwen2moe" || s.arch == "olmoe") && s.tied_output)
    return Status::InvalidArgument("synth: " + s.arch + " needs its own output.weight (llama.cpp requires it)");
  if (moe_arch && s.n_expert <= 0) return Status::InvalidArgument("synth: " + s.arch + " needs experts");
  const int64_t FX = s.n_ff_exp > 0 ? s.n_ff_exp : s.n_ff;
  const int64_t FS = s.n_ff_shexp > 0 ? s.n_ff_shexp : s.n_ff;
  if (s.arch == "olmoe" && FX != s.n_ff)
    return Status::InvalidArgument("synth: olmoe experts have width feed_forward_length (n_ff_exp must be 0 or n_ff)");
  if (!(s.residual_scale > 0)) return Status::InvalidArgument("synth: residual_scale must be positive");

  gguf::GgufWriter w;
  const std::string a = s.arch + ".";
  w.Set("general.architecture", gguf::Value::Str(s.arch));
  w.Set("general.name", gguf::Value::Str("tierlm-synth-" + s.name + "-" + SynthTypeName(type)));
  w.Set("general.description", gguf::Value::Str("synthetic model written by tierlm synth: RANDOM WEIGHTS, meaningless output"));
  w.Set(a + "context_length", gguf::Value::U32(static_cast<uint32_t>(s.n_ctx)));
  w.Set(a + "embedding_length", gguf::Value::U32(static_cast<uint32_t>(s.n_embd)));
  w.Set(a + "block_count", gguf::Value::U32(static_cast<uint32_t>(s.n_layer)));
  w.Set(a + "feed_forward_length", gguf::Value::U32(static_cast<uint32_t>(s.n_ff)));
  w.Set(a + "attention.head_count", gguf::Value::U32(static_cast<uint32_t>(s.n_head)));
  w.Set(a + "attention.head_count_kv", gguf::Value::U32(static_cast<uint32_t>(s.n_head_kv)));
  if (s.head_dim > 0) {
    w.Set(a + "attention.key_length", gguf::Value::U32(static_cast<uint32_t>(HD)));
    w.Set(a + "attention.value_length", gguf::Value::U32(static_cast<uint32_t>(HD)));
  }
  w.Set(a + "rope.dimension_count", gguf::Value::U32(static_cast<uint32_t>(HD)));
  w.Set(a + "rope.freq_base", gguf::Value::F32(s.rope_base));
  w.Set(a + "attention.layer_norm_rms_epsilon", gguf::Value::F32(s.rms_eps));
  if (s.n_expert > 0) {
    if (s.arch == "qwen2") return Status::InvalidArgument("synth: experts are not supported for qwen2 (use qwen2moe)");
    if (s.n_expert_used < 1 || s.n_expert_used > s.n_expert)
      return Status::InvalidArgument("synth: experts used per token must be in [1, expert count]");
    w.Set(a + "expert_count", gguf::Value::U32(static_cast<uint32_t>(s.n_expert)));
    w.Set(a + "expert_used_count", gguf::Value::U32(static_cast<uint32_t>(s.n_expert_used)));
    if (s.arch == "qwen2moe" || s.arch == "qwen3moe")
      w.Set(a + "expert_feed_forward_length", gguf::Value::U32(static_cast<uint32_t>(FX)));
    if (s.arch == "qwen2moe")
      w.Set(a + "expert_shared_feed_forward_length", gguf::Value::U32(static_cast<uint32_t>(FS)));
  }

  SynthVocab vocab = MakeSynthVocab(s.n_vocab);
  std::vector<gguf::Value> toks, scores, types;
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    toks.push_back(gguf::Value::Str(vocab.tokens[i]));
    scores.push_back(gguf::Value::F32(vocab.scores[i]));
    types.push_back(gguf::Value::I32(vocab.types[i]));
  }
  w.Set("tokenizer.ggml.model", gguf::Value::Str("llama"));
  w.Set("tokenizer.ggml.tokens", gguf::Value::Array(gguf::ValueType::kString, std::move(toks)));
  w.Set("tokenizer.ggml.scores", gguf::Value::Array(gguf::ValueType::kFloat32, std::move(scores)));
  w.Set("tokenizer.ggml.token_type", gguf::Value::Array(gguf::ValueType::kInt32, std::move(types)));
  w.Set("tokenizer.ggml.bos_token_id", gguf::Value::U32(1));
  w.Set("tokenizer.ggml.eos_token_id", gguf::Value::U32(2));
  w.Set("tokenizer.ggml.unknown_token_id", gguf::Value::U32(0));
  w.Set("general.file_type", gguf::Value::U32(static_cast<uint32_t>(type)));

  const int64_t E = s.n_embd, Q = s.n_head * HD, KV = s.n_head_kv * HD, F = s.n_ff;
  std::vector<TensorPlan> plan;
  // Weights ~ N(0, 1/fan_in) (residual-branch outputs times residual_scale); token
  // embedding ~ N(0, 1); norms ~ 1 + 0.1 N(0, 1); biases ~ 0.1 N(0, 1).
  auto mat = [&](const std::string& n, int64_t in, int64_t out, int64_t layer, float scale = 1.0f) {
    plan.push_back({n, {in, out}, layer, 0.0f, scale / std::sqrt(static_cast<float>(in))});
  };
  auto stacked = [&](const std::string& n, int64_t in, int64_t out, int64_t layer, float scale = 1.0f) {
    plan.push_back({n, {in, out, s.n_expert}, layer, 0.0f, scale / std::sqrt(static_cast<float>(in))});
  };
  const float rs = s.residual_scale;
  plan.push_back({"token_embd.weight", {E, s.n_vocab}, -1, 0.0f, 1.0f});
  plan.push_back({"output_norm.weight", {E}, -1, 1.0f, 0.1f});
  if (!s.tied_output) mat("output.weight", E, s.n_vocab, -1);
  if (s.rope_freqs) plan.push_back({"rope_freqs.weight", {HD / 2}, -1, 0.0f, 0.0f, /*ramp=*/true});
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    plan.push_back({p + "attn_norm.weight", {E}, l, 1.0f, 0.1f});
    mat(p + "attn_q.weight", E, Q, l);
    mat(p + "attn_k.weight", E, KV, l);
    mat(p + "attn_v.weight", E, KV, l);
    if (s.arch == "qwen2" || s.arch == "qwen2moe") {
      plan.push_back({p + "attn_q.bias", {Q}, l, 0.0f, 0.1f});
      plan.push_back({p + "attn_k.bias", {KV}, l, 0.0f, 0.1f});
      plan.push_back({p + "attn_v.bias", {KV}, l, 0.0f, 0.1f});
    }
    if (s.arch == "qwen3moe") {  // per head
      plan.push_back({p + "attn_q_norm.weight", {HD}, l, 1.0f, 0.1f});
      plan.push_back({p + "attn_k_norm.weight", {HD}, l, 1.0f, 0.1f});
    } else if (s.arch == "olmoe") {  // over the whole projection
      plan.push_back({p + "attn_q_norm.weight", {Q}, l, 1.0f, 0.1f});
      plan.push_back({p + "attn_k_norm.weight", {KV}, l, 1.0f, 0.1f});
    }
    mat(p + "attn_output.weight", Q, E, l, rs);
    plan.push_back({p + "ffn_norm.weight", {E}, l, 1.0f, 0.1f});
    if (s.n_expert > 0) {
      mat(p + "ffn_gate_inp.weight", E, s.n_expert, l);
      stacked(p + "ffn_gate_exps.weight", E, FX, l);
      stacked(p + "ffn_up_exps.weight", E, FX, l);
      stacked(p + "ffn_down_exps.weight", FX, E, l, rs);
      if (s.arch == "qwen2moe") {
        plan.push_back({p + "ffn_gate_inp_shexp.weight", {E}, l, 0.0f, 1.0f / std::sqrt(static_cast<float>(E))});
        mat(p + "ffn_gate_shexp.weight", E, FS, l);
        mat(p + "ffn_up_shexp.weight", E, FS, l);
        mat(p + "ffn_down_shexp.weight", FS, E, l, rs);
      }
    } else {
      mat(p + "ffn_gate.weight", E, F, l);
      mat(p + "ffn_up.weight", E, F, l);
      mat(p + "ffn_down.weight", F, E, l, rs);
    }
  }

  for (const auto& tp : plan) {
    const int64_t n_in = tp.ne[0];
    int64_t n_rows = 1;
    for (size_t d = 1; d < tp.ne.size(); ++d) n_rows *= tp.ne[d];
    const GgmlType gt = SynthTensorType(type, tp.name, tp.layer, s.n_layer, n_in);
    const uint64_t tseed = seed ^ HashName(tp.name);
    TensorPlan copy = tp;
    TIERLM_RETURN_IF_ERROR(w.AddTensor(tp.name, gt, tp.ne, [=](uint8_t* dst, uint64_t) -> Status {
      const int64_t row_bytes = RowBytes(gt, n_in);
      auto rows = [&](int64_t begin, int64_t end) {
        std::vector<float> buf(static_cast<size_t>(n_in));
        for (int64_t r = begin; r < end; ++r) {
          if (copy.ramp) {
            for (int64_t i = 0; i < n_in; ++i) buf[static_cast<size_t>(i)] = 1.0f + 0.5f * static_cast<float>(i);
          } else {
            FillNormal(tseed + static_cast<uint64_t>(r) * 0x9E3779B97F4A7C15ull, copy.mean, copy.stddev, buf.data(), n_in);
          }
          QuantizeRow(gt, buf.data(), dst + r * row_bytes, n_in);
        }
      };
      if (pool) pool->ParallelFor(n_rows, 16, rows);
      else rows(0, n_rows);
      return Status::Ok();
    }));
  }
  return w.Write(path, progress);
}

}  // namespace tierlm
