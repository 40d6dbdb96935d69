#include "cli/default_model.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <unistd.h>

#include "core/thread_pool.h"
#include "synth/synth_model.h"

// stories260K.gguf, embedded by the assembler (TIERLM_DEFAULT_MODEL_PATH is set by CMake).
asm(".section .rodata\n"
    ".balign 64\n"
    ".global tierlm_default_model_begin\n"
    "tierlm_default_model_begin:\n"
    ".incbin \"" TIERLM_DEFAULT_MODEL_PATH "\"\n"
    ".global tierlm_default_model_end\n"
    "tierlm_default_model_end:\n"
    ".previous\n");
extern "C" const char tierlm_default_model_begin[];
extern "C" const char tierlm_default_model_end[];

namespace tierlm::cli {
namespace {

Result<std::filesystem::path> CacheDir() {
  std::filesystem::path dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::filesystem::path(x) / "tierlm";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::filesystem::path(h) / ".cache" / "tierlm";
  else dir = std::filesystem::temp_directory_path() / "tierlm-cache";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError(dir.string() + ": cannot create the cache folder: " + ec.message());
  return dir;
}

bool HoldsBytes(const std::filesystem::path& path, const char* data, size_t size) {
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) != size || ec) return false;
  std::ifstream in(path, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(in)), {});
  return got.size() == size && std::memcmp(got.data(), data, size) == 0;
}

Status WriteAtomically(const std::filesystem::path& path, const char* data, size_t size) {
  const auto tmp = path.string() + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(data, static_cast<std::streamsize>(size));
    out.flush();
    if (!out) {
      std::filesystem::remove(tmp);
      return Status::IoError(tmp + ": cannot write the default model (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IoError(path.string() + ": cannot write the default model: " + ec.message());
  return Status::Ok();
}

}  // namespace

Result<std::string> EnsureDefaultModel(bool synthetic) {
  TIERLM_ASSIGN_OR_RETURN(std::filesystem::path dir, CacheDir());
  if (synthetic) {
    const auto path = dir / "synth-small-llama-q4_0.gguf";
    std::fprintf(stderr,
                 "note: --synthetic: using tierlm's built-in SYNTHETIC model (llama architecture, RANDOM weights),\n"
                 "      so the text below is meaningless; it is there for shapes and speed.\n");
    if (!std::filesystem::exists(path)) {
      auto spec = SynthPreset("small", "llama");
      ThreadPool pool(DefaultThreadCount());
      TIERLM_RETURN_IF_ERROR(WriteSynthModel(*spec, SynthType::kQ4_0, 42, path.string(), &pool));
      std::fprintf(stderr, "note: wrote %s\n", path.string().c_str());
    }
    return path.string();
  }
  const auto path = dir / "stories260K.gguf";
  const size_t size = static_cast<size_t>(tierlm_default_model_end - tierlm_default_model_begin);
  std::fprintf(stderr,
               "note: no model given (-m): using the built-in stories260K, a real but tiny model (260K parameters,\n"
               "      trained on TinyStories by Andrej Karpathy, MIT): it tells short children's stories in\n"
               "      simple English. Run 'tierlm run -m your-model.gguf' for your own model.\n");
  if (!HoldsBytes(path, tierlm_default_model_begin, size))
    TIERLM_RETURN_IF_ERROR(WriteAtomically(path, tierlm_default_model_begin, size));
  return path.string();
}

}  // namespace tierlm::cli
