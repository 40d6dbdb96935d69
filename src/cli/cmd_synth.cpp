#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "synth/synth_model.h"

namespace tierlm::cli {
namespace {

// Layers and vocabulary a synth file may have: llama.cpp reads at most 512 layers
// (LLAMA_MAX_LAYERS); real vocabularies stay under 300k tokens.
constexpr int64_t kMaxSynthLayers = 512;
constexpr int64_t kMinSynthVocab = 260, kMaxSynthVocab = int64_t{1} << 20;

// A lower bound on the bytes of the file and of its largest tensor (the writer holds one
// tensor in memory at a time), so that a shape that cannot be written is refused before
// any allocation or write instead of failing hours or terabytes later.
struct SynthSize {
  double file = 0, largest = 0;
};
SynthSize EstimateSynthSize(const SynthSpec& s, SynthType type) {
  double bpe = 0.5625;  // q4_0, q4_K: 4.5 bits per weight
  if (type == SynthType::kF32) bpe = 4;
  else if (type == SynthType::kF16 || type == SynthType::kBF16) bpe = 2;
  else if (type == SynthType::kQ8_0) bpe = 34.0 / 32;
  const double E = static_cast<double>(s.n_embd), V = static_cast<double>(s.n_vocab);
  const double HD = s.head_dim > 0 ? static_cast<double>(s.head_dim) : (s.n_head > 0 ? E / s.n_head : 0);
  const double Q = s.n_head * HD, KV = s.n_head_kv * HD;
  const double F = static_cast<double>(s.n_ff), FX = static_cast<double>(s.n_ff_exp > 0 ? s.n_ff_exp : s.n_ff);
  const double X = static_cast<double>(s.n_expert);
  const double ffn = X > 0 ? 3 * E * FX * X : 3 * E * F;
  const double per_layer = 2 * E * Q + 2 * E * KV + ffn;
  SynthSize out;
  out.file = bpe * (V * E * (s.tied_output ? 1 : 2) + static_cast<double>(s.n_layer) * per_layer);
  out.largest = bpe * std::max({V * E, X > 0 ? E * FX * X : E * F, E * Q});
  return out;
}

std::string Gib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  return b;
}

}  // namespace

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
  ap.Add({"--layers"}, &layers, "override the preset's layer count: 1 to 512 (0: the preset's)");
  ap.Add({"--vocab"}, &vocab, "override the preset's vocabulary size: 260 to 1048576 (0: the preset's)");
  bool seed_random = false;
  ap.AddSeed({"--seed"}, &seed, &seed_random, "random seed; -1 draws one (default 42)");
  ap.Add({"-t", "--threads"}, &threads, "threads, at most 1024 (default and <= 0: all cores)");
  ap.Add({"-o", "--output"}, &out, "output GGUF path (required)");
  bool quiet = false;
  ap.Flag({"-q", "--quiet"}, &quiet, "print no progress line on stderr");
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
  if (layers < 0 || layers > kMaxSynthLayers)
    return ReportError(Status::InvalidArgument("synth: --layers " + std::to_string(layers) + ": must be 1 to " +
                                               std::to_string(kMaxSynthLayers) + " (0: the preset's)"));
  if (vocab != 0 && (vocab < kMinSynthVocab || vocab > kMaxSynthVocab))
    return ReportError(Status::InvalidArgument("synth: --vocab " + std::to_string(vocab) + ": must be " +
                                               std::to_string(kMinSynthVocab) + " to " + std::to_string(kMaxSynthVocab) +
                                               " (0: the preset's)"));
  if (layers > 0) spec->n_layer = layers;
  if (vocab > 0) spec->n_vocab = vocab;
  auto n_threads = ResolveThreadCount(threads);
  if (!n_threads.ok()) return ReportError(n_threads.status());
  NoteThreads(threads);
  {
    const SynthSize size = EstimateSynthSize(*spec, *type);
    std::filesystem::path dir = std::filesystem::path(out).parent_path();
    if (dir.empty()) dir = ".";
    struct statvfs vfs;
    if (::statvfs(dir.c_str(), &vfs) == 0) {
      const double free_bytes = static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize);
      if (size.file > free_bytes)
        return ReportError(Status::ResourceExhausted("synth: the file would take at least " + Gib(size.file) + " but " +
                                                     dir.string() + " has " + Gib(free_bytes) +
                                                     " free: use fewer --layers or a smaller --vocab"));
    }
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && size.largest > static_cast<double>(pages) * static_cast<double>(page) / 2)
      return ReportError(Status::ResourceExhausted(
          "synth: its largest tensor alone would take at least " + Gib(size.largest) + " of memory, over half of this " +
          "machine's " + Gib(static_cast<double>(pages) * static_cast<double>(page)) + ": use a smaller --vocab"));
  }

  auto pool_or = ThreadPool::Create(*n_threads);
  if (!pool_or.ok()) return ReportError(pool_or.status());
  ThreadPool& pool = **pool_or;
  const auto t0 = std::chrono::steady_clock::now();
  Progress progress(ProgressOptions::FromEnvironment(quiet));
  progress.Start("synth", 0, Progress::Unit::kBytes);
  st = WriteSynthModel(*spec, *type, seed, out, &pool, progress.Reporter());
  if (!st.ok()) {
    progress.Stop();
    return ReportError(st);
  }
  progress.Finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %s %s-shaped model, %s, RANDOM weights (seed %llu), in %.1f s\n", out.c_str(),
              spec->arch.c_str(), spec->name.c_str(), SynthTypeName(*type), static_cast<unsigned long long>(seed), secs);
  return 0;
}

}  // namespace tierlm::cli
