// Where tests find the shared fixtures, their scratch space and the tierlm binary.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

namespace tierlm::testing {

// ../shared beside the checkout, or $TIERLM_SHARED_DIR.
inline std::filesystem::path SharedDir() {
  if (const char* env = std::getenv("TIERLM_SHARED_DIR")) return env;
  return std::filesystem::path(TIERLM_SOURCE_DIR).parent_path() / "shared";
}
inline std::filesystem::path ModelsDir() { return SharedDir() / "models"; }
inline std::filesystem::path FixturesDir() { return SharedDir() / "fixtures"; }
inline std::filesystem::path SourceDir() { return TIERLM_SOURCE_DIR; }
inline std::string TierlmBinary() { return TIERLM_BINARY; }

// A fresh scratch folder for one test, removed by the caller or left for inspection.
inline std::filesystem::path ScratchDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("tierlm-test-" + name + "-" +
                                                      std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace tierlm::testing
