// Where tests find their data, their scratch space and the tierlm binary.
//
// Everything a test reads is in the checkout or made by the build: the trained model in
// tests/models/, llama.cpp's outputs and the tokenizer vectors in tests/fixtures/ (the large
// ones xz-compressed, decompressed by the build into DataDir()), and synthetic models that
// SynthModel() writes from a fixed seed. Nothing outside the checkout and the build tree is
// read. A missing file fails the test that asked for it; nothing is skipped.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include <unistd.h>

namespace tierlm::testing {

inline std::filesystem::path SourceDir() { return TIERLM_SOURCE_DIR; }
// The build's test-data folder: decompressed fixtures, generated models.
inline std::filesystem::path DataDir() { return TIERLM_TEST_DATA_DIR; }
inline std::string TierlmBinary() { return TIERLM_BINARY; }

// stories260K (tests/models/README.md): the real trained model in the repository.
inline std::filesystem::path StoriesModel() { return SourceDir() / "tests" / "models" / "stories260K.gguf"; }

// A file of tests/fixtures (e.g. "llamacpp/tiny-f32.json"): the committed file, else the
// build's decompressed copy of "<rel>.xz". Adds a test failure naming both when neither is
// there.
std::filesystem::path Fixture(const std::string& rel);

// A synthetic model `tierlm synth --preset PRESET --type TYPE --seed SEED` (deterministic),
// written once into DataDir()/models as "PRESET-TYPE.gguf" (seed 42) and reused. Adds a test
// failure if it cannot be written.
std::filesystem::path SynthModel(const std::string& preset, const std::string& type, uint64_t seed = 42);

// The scratch folders this process made, removed when it exits if every test passed (a
// failure leaves them for inspection, as does TIERLM_KEEP_SCRATCH=1).
class ScratchRegistry {
 public:
  static void Add(const std::filesystem::path& dir) {
    static ScratchRegistry registry;
    registry.dirs_.push_back(dir);
  }
  ~ScratchRegistry() {
    const ::testing::UnitTest* u = ::testing::UnitTest::GetInstance();
    if (std::getenv("TIERLM_KEEP_SCRATCH") || (u && u->Failed())) return;
    std::error_code ec;
    for (const auto& d : dirs_) std::filesystem::remove_all(d, ec);
  }

 private:
  std::vector<std::filesystem::path> dirs_;
};

// A fresh scratch folder for one test, removed at exit (ScratchRegistry) unless a test failed.
inline std::filesystem::path ScratchDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("tierlm-test-" + name + "-" +
                                                      std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ScratchRegistry::Add(dir);
  return dir;
}

}  // namespace tierlm::testing
