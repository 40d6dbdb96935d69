// A model that fits is held once: peak RSS of `tierlm run` stays within the file size plus
// the KV cache plus 10% (llama.cpp's mmap + repack holds two copies).
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "synth/synth_model.h"
#include "test_paths.h"

namespace tierlm {
namespace {

TEST(MemoryTest, PeakRssIsOneCopyOfTheWeights) {
  const auto dir = testing::ScratchDir("memory");
  const std::string path = (dir / "m.gguf").string();
  auto spec = SynthPreset("small", "llama");
  ThreadPool pool(2);
  ASSERT_TRUE(WriteSynthModel(*spec, SynthType::kF32, 3, path, &pool).ok());
  const double file_bytes = static_cast<double>(std::filesystem::file_size(path));
  const int64_t n_ctx = 256;
  const double kv_bytes = 2.0 * spec->n_layer * n_ctx * (spec->n_head_kv * (spec->n_embd / spec->n_head)) * 4;

  auto r = testing::RunShell(testing::Quote(testing::TierlmBinary()) + " run -m " + testing::Quote(path) +
                             " -c " + std::to_string(n_ctx) + " -p 'Once upon a time' -n 8 --temp 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("peak RSS ([0-9.]+) MiB"))) << r.output;
  const double peak = std::stod(m[1]) * 1048576.0;
  EXPECT_GT(peak, file_bytes * 0.9) << "the weights should be resident";
  EXPECT_LE(peak, (file_bytes + kv_bytes) * 1.10) << r.output;
  // Load time and time to first token are reported.
  EXPECT_NE(r.output.find("load: "), std::string::npos);
  EXPECT_NE(r.output.find("first token after"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
