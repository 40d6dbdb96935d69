#include "test_paths.h"

#include <gtest/gtest.h>

#include <mutex>

#include "core/thread_pool.h"
#include "synth/synth_model.h"

namespace tierlm::testing {

std::filesystem::path Fixture(const std::string& rel) {
  const auto committed = SourceDir() / "tests" / "fixtures" / rel;
  if (std::filesystem::exists(committed)) return committed;
  const auto built = DataDir() / "fixtures" / rel;
  if (std::filesystem::exists(built)) return built;
  ADD_FAILURE() << "test fixture missing: neither " << committed << " nor " << built
                << " (decompressed from " << committed.string() << ".xz by the build) exists";
  return committed;
}

std::filesystem::path SynthModel(const std::string& preset, const std::string& type, uint64_t seed) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::string name = preset + "-" + type;
  if (seed != 42) name += "-seed" + std::to_string(seed);
  const auto dir = DataDir() / "models";
  const auto path = dir / (name + ".gguf");
  if (std::filesystem::exists(path)) return path;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto spec = SynthPreset(preset, "");
  auto t = ParseSynthType(type);
  if (!spec || !t) {
    ADD_FAILURE() << "SynthModel: unknown preset '" << preset << "' or type '" << type << "'";
    return path;
  }
  // Written under a private name, then renamed: tests running in parallel never see half a file.
  const auto tmp = dir / (name + ".gguf.tmp" + std::to_string(::getpid()));
  ThreadPool pool(2);
  const Status st = WriteSynthModel(*spec, *t, seed, tmp.string(), &pool);
  if (!st.ok()) {
    ADD_FAILURE() << "SynthModel " << name << ": " << st.ToString();
    return path;
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) ADD_FAILURE() << "SynthModel " << name << ": rename: " << ec.message();
  return path;
}

}  // namespace tierlm::testing
