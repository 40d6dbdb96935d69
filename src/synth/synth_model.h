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

#include "core/status.h"
#include "core/thread_pool.h"
#include "format/ggml_type.h"

namespace tierlm {

struct SynthSpec {
  std::string arch = "llama";  // "llama" or "qwen2"
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
  int64_t n_expert = 0;       // > 0: Mixtral-layout MoE FFN with n_expert experts
  int64_t n_expert_used = 0;  // experts per token
  bool rope_freqs = false;    // write Llama 3.1-style rope_freqs.weight divisors
};

// Weight encodings a synthetic file can use. kQ4_K_M mixes q4_K and q6_K like
// llama-quantize's Q4_K_M; the others use one type for every matrix (norms stay f32).
enum class SynthType { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K_M };

std::optional<SynthType> ParseSynthType(const std::string& name);
const char* SynthTypeName(SynthType t);

// Presets by name: "tiny", "small", "tinyllama-1.1b", "llama2-7b", "mistral-7b",
// "qwen2-0.5b", "qwen2-tiny", "moe-tiny", "mixtral-8x7b", "tiny-rope-freqs".
std::optional<SynthSpec> SynthPreset(const std::string& name, const std::string& arch);
std::vector<std::string> SynthPresetNames();

// The type llama-quantize would give tensor `name` (layer `layer` of n_layer; -1 for
// non-layer tensors) of row length n_in in a file of type t.
GgmlType SynthTensorType(SynthType t, const std::string& name, int64_t layer, int64_t n_layer, int64_t n_in);

// Writes the model to path. Deterministic for a given spec, type and seed.
Status WriteSynthModel(const SynthSpec& spec, SynthType type, uint64_t seed, const std::string& path,
                       ThreadPool* pool);

}  // namespace tierlm
