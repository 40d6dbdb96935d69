// Hyper-parameters of a decoder-only transformer, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "format/gguf_file.h"

namespace tierlm {

// llama also covers Mixtral-style experts (llama with expert_count > 0).
enum class Arch { kLlama, kQwen2, kQwen2Moe, kQwen3Moe, kOlmoe };
// How RoPE pairs the dimensions of a head: (2i, 2i+1) or (i, i + n_rot/2).
enum class RopeStyle { kNormal, kNeox };
// RMSNorm of the query and key projections before RoPE: none, per head with a [head_dim]
// weight (qwen3moe), or over the whole projection with a [q_dim] / [kv_dim] weight (olmoe).
enum class QkNorm { kNone, kPerHead, kWhole };

const char* ArchName(Arch a);

struct ModelHParams {
  Arch arch = Arch::kLlama;
  std::string arch_name;     // as in general.architecture
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;      // n_embd / n_head unless the file says otherwise
  int64_t n_ff = 0;          // dense FFN width (0 allowed for MoE files that give n_ff_exp)
  int64_t n_rot = 0;         // dimensions of each head that RoPE rotates
  int64_t n_expert = 0;      // 0 for dense models
  int64_t n_expert_used = 0;
  int64_t n_ff_exp = 0;      // width of each routed expert's FFN (MoE only)
  int64_t n_ff_shexp = 0;    // width of the always-on shared expert (qwen2moe); 0: none
  bool expert_weights_norm = true;  // renormalize the top-k routing weights to sum to 1
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  RopeStyle rope_style = RopeStyle::kNormal;
  bool qkv_bias = false;     // Q/K/V biases required (qwen2, qwen2moe)
  QkNorm qk_norm = QkNorm::kNone;

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }

  // Reads and validates the hyper-parameters; errors name the file and key.
  static Result<ModelHParams> FromGguf(const gguf::GgufFile& f);
};

}  // namespace tierlm
