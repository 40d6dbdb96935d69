#include "cli/default_model.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "core/thread_pool.h"
#include "synth/synth_model.h"

namespace tierlm::cli {

Result<std::string> EnsureDefaultModel() {
  std::filesystem::path dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::filesystem::path(x) / "tierlm";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::filesystem::path(h) / ".cache" / "tierlm";
  else dir = std::filesystem::temp_directory_path() / "tierlm-cache";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError(dir.string() + ": cannot create the cache folder: " + ec.message());
  const auto path = dir / "synth-small-llama-q4_0.gguf";
  std::fprintf(stderr,
               "note: no model given (-m): using tierlm's built-in SYNTHETIC model (llama architecture, RANDOM "
               "weights),\n      so the text below is meaningless. Run 'tierlm run -m your-model.gguf' for real "
               "output.\n");
  if (!std::filesystem::exists(path)) {
    auto spec = SynthPreset("small", "llama");
    ThreadPool pool(DefaultThreadCount());
    TIERLM_RETURN_IF_ERROR(WriteSynthModel(*spec, SynthType::kQ4_0, 42, path.string(), &pool));
    std::fprintf(stderr, "note: wrote %s\n", path.string().c_str());
  }
  return path.string();
}

}  // namespace tierlm::cli
