// Synthetic models: real architectures and shapes, random weights, a made-up vocabulary.
//
// `tierlm synth` writes them so that benchmarks and tests can use model shapes users run
// (TinyLlama-1.1B, Llama-2-7B, ...) without downloading weights. The text they generate is
// meaningless; speed and memory behave as for the real model of that shape.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/progress.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "format/ggml_type.h"

namespace tierlm {

struct SynthSpec {
  std::string arch = "llama";  // "llama", "qwen2", "qwen2moe", "qwen3moe" or "olmoe"
  std::string name = "tiny";
  int64_t n_vocab = 512;
  int64_t n_embd = 256;
  int64_t n_layer = 4;
  int64_t n_head = 8;
  int64_t n_head_kv = 4;
  int64_t n_ff = 768;
  int64_t n_ctx = 512;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_output = false;
  int64_t head_dim = 0;       // 0: n_embd / n_head; else written as attention.key_length (qwen3moe)
  int64_t n_expert = 0;       // > 0: MoE FFN with n_expert experts (required by the MoE archs)
  int64_t n_expert_used = 0;  // experts per token
  int64_t n_ff_exp = 0;       // routed expert width (0: n_ff); olmoe and llama use n_ff
  int64_t n_ff_shexp = 0;     // qwen2moe shared expert width (0: n_ff)
  // Multiplies the random scale of the residual-branch outputs (attn_output, expert and
  // shared-expert down projections). Below 1 keeps each token's hidden state close to its
  // embedding through many layers, so routing depends on the token as in trained models
  // instead of collapsing to the same experts for every token (random deep nets do).
  float residual_scale = 1.0f;
  bool rope_freqs = false;    // write Llama 3.1-style rope_freqs.weight divisors
};

// Weight encodings a synthetic file can use. kQ4_K_M mixes q4_K and q6_K like
// llama-quantize's Q4_K_M; the others use one type for every matrix (norms stay f32).
enum class SynthType { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K_M };

std::optional<SynthType> ParseSynthType(const std::string& name);
const char* SynthTypeName(SynthType t);

// Presets by name: "tiny", "small", "tinyllama-1.1b", "llama2-7b", "mistral-7b",
// "qwen2-0.5b", "qwen2-tiny", "moe-tiny", "mixtral-8x7b", "tiny-rope-freqs",
// "qwen3-30b-a3b", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "qwen3moe-tiny", "qwen2moe-tiny",
// "olmoe-tiny". Presets of a fixed architecture (qwen2*, the MoE ones) ignore `arch`.
std::optional<SynthSpec> SynthPreset(const std::string& name, const std::string& arch);
std::vector<std::string> SynthPresetNames();

// The type llama-quantize would give tensor `name` (layer `layer` of n_layer; -1 for
// non-layer tensors) of row length n_in in a file of type t.
GgmlType SynthTensorType(SynthType t, const std::string& name, int64_t layer, int64_t n_layer, int64_t n_in);

// Writes the model to path. Deterministic for a given spec, type and seed. progress, when
// set, gets the tensor bytes written so far and their total.
Status WriteSynthModel(const SynthSpec& spec, SynthType type, uint64_t seed, const std::string& path,
                       ThreadPool* pool, const ProgressFn& progress = {});

}  // namespace tierlm
