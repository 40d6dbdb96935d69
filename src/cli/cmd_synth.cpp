#include <chrono>
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/thread_pool.h"
#include "synth/synth_model.h"

namespace tierlm::cli {

int SynthCommand(int argc, char** argv) {
  ArgParser ap("synth");
  std::string arch = "llama", preset = "tiny", type_name = "q4_0", out;
  uint64_t seed = 42;
  int32_t threads = 0;
  int64_t layers = 0, vocab = 0;
  ap.Add({"--arch"}, &arch, "architecture of the generic presets: llama or qwen2 (default llama)");
  ap.Add({"--preset"}, &preset,
         "shape: tiny, small, tinyllama-1.1b, llama2-7b, mistral-7b, qwen2-0.5b, qwen2-tiny, moe-tiny, "
         "mixtral-8x7b, qwen3-30b-a3b, olmoe-1b-7b, qwen1.5-moe-a2.7b, qwen3moe-tiny, qwen2moe-tiny, olmoe-tiny");
  ap.Add({"--type"}, &type_name, "weights: f32, f16, bf16, q8_0, q4_0, q4_k_m (default q4_0)");
  ap.Add({"--layers"}, &layers, "override the preset's layer count");
  ap.Add({"--vocab"}, &vocab, "override the preset's vocabulary size");
  ap.Add({"--seed"}, &seed, "random seed (default 42)");
  ap.Add({"-t", "--threads"}, &threads, "threads (default: all cores)");
  ap.Add({"-o", "--output"}, &out, "output GGUF path (required)");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (out.empty()) return ReportError(Status::InvalidArgument("synth: -o OUTPUT.gguf is required"));
  auto spec = SynthPreset(preset, arch);
  if (!spec) {
    std::string names;
    for (const auto& n : SynthPresetNames()) names += (names.empty() ? "" : ", ") + n;
    return ReportError(Status::InvalidArgument("synth: unknown preset '" + preset + "' (known: " + names + ")"));
  }
  auto type = ParseSynthType(type_name);
  if (!type)
    return ReportError(Status::InvalidArgument("synth: unknown type '" + type_name + "' (f32, f16, bf16, q8_0, q4_0, q4_k_m)"));
  if (layers > 0) spec->n_layer = layers;
  if (vocab > 0) spec->n_vocab = vocab;

  ThreadPool pool(threads > 0 ? threads : DefaultThreadCount());
  const auto t0 = std::chrono::steady_clock::now();
  st = WriteSynthModel(*spec, *type, seed, out, &pool);
  if (!st.ok()) return ReportError(st);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %s %s-shaped model, %s, RANDOM weights (seed %llu), in %.1f s\n", out.c_str(),
              spec->arch.c_str(), spec->name.c_str(), SynthTypeName(*type), static_cast<unsigned long long>(seed), secs);
  return 0;
}

}  // namespace tierlm::cli
