// The user-facing commands end to end through the real binary.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli_runner.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

std::string Bin() { return Quote(testing::TierlmBinary()); }
std::string Stories() { return Quote((testing::StoriesModel()).string()); }

TEST(CliCommandsTest, InspectSummarizesAFile) {
  auto r = RunShell(Bin() + " inspect " + Quote(testing::SynthModel("tiny", "q4_k_m").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("general.architecture"), std::string::npos);
  EXPECT_NE(r.output.find("blk.0.attn_q.weight"), std::string::npos);
  EXPECT_NE(r.output.find("q4_K"), std::string::npos);
  EXPECT_NE(r.output.find("q6_K"), std::string::npos);
  EXPECT_NE(r.output.find("bytes by type"), std::string::npos);
  EXPECT_NE(r.output.find("none: tierlm can run this model"), std::string::npos);
}

TEST(CliCommandsTest, SynthWritesAModelThatInspectAndRunAccept) {
  const auto dir = testing::ScratchDir("cli-synth");
  const std::string path = (dir / "s.gguf").string();
  auto r = RunShell(Bin() + " synth --preset tiny --type q4_k_m --layers 2 -o " + Quote(path));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("RANDOM weights"), std::string::npos);
  r = RunShell(Bin() + " inspect " + Quote(path));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("none: tierlm can run this model"), std::string::npos) << r.output;
  r = RunShell(Bin() + " run -m " + Quote(path) + " -p 'Once upon a time' -n 5 --temp 0 --token-ids", false);
  EXPECT_EQ(r.exit_code, 0);
  r = RunShell(Bin() + " synth --preset nonesuch -o " + Quote(path));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown preset 'nonesuch'"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(CliCommandsTest, SeededSamplingIsReproducibleAndSeedsDiffer) {
  const std::string cmd = Bin() + " run -m " + Stories() +
                          " -p 'Once upon a time' -n 40 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 --token-ids -s ";
  auto a = RunShell(cmd + "1", false);
  auto b = RunShell(cmd + "1", false);
  auto c = RunShell(cmd + "2", false);
  ASSERT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.output, b.output);
  EXPECT_NE(a.output, c.output);
}

TEST(CliCommandsTest, ChatRunsTurnsFromStdin) {
  auto r = RunShell("printf 'Once upon a time\\nThe dog\\n\\n' | " + Bin() + " chat -m " + Stories() +
                    " --temp 0 -n 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  size_t prompts = 0;
  for (size_t pos = r.output.find("> "); pos != std::string::npos; pos = r.output.find("> ", pos + 1)) ++prompts;
  EXPECT_GE(prompts, 3u) << r.output;
  EXPECT_NE(r.output.find("chat template: chatml"), std::string::npos);
}

TEST(CliCommandsTest, BenchPrintsLlamaBenchJsonFields) {
  auto r = RunShell(Bin() + " bench -m " + Stories() + " -p 16 -n 4 -r 2 -o json --no-bandwidth", false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* field : {"\"n_prompt\": 16", "\"n_gen\": 4", "\"avg_ts\"", "\"stddev_ts\"", "\"samples_ts\""})
    EXPECT_NE(r.output.find(field), std::string::npos) << field << " in " << r.output;
}

// Without -m, run tells a story with the embedded stories260K (a real trained model);
// --synthetic gives the random-weight model of a real shape instead, and says so.
TEST(CliCommandsTest, DefaultModelRunsWithoutArguments) {
  const auto dir = testing::ScratchDir("cli-default");
  const std::string env = "XDG_CACHE_HOME=" + Quote(dir.string()) + " ";
  auto r = RunShell(env + Bin() + " run -p 'Once upon a time' -n 24 --temp 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("stories260K"), std::string::npos) << r.output;
  // stories260K's own greedy continuation (StoriesGoldenTest checks the whole story).
  EXPECT_NE(r.output.find("Once upon a time, there was a little girl named Lily."), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("RANDOM"), std::string::npos) << r.output;
  const auto cached = dir / "tierlm" / "stories260K.gguf";
  ASSERT_TRUE(std::filesystem::exists(cached));
  EXPECT_EQ(std::filesystem::file_size(cached), std::filesystem::file_size(testing::StoriesModel()));

  // A damaged cached copy is replaced, not used.
  std::filesystem::resize_file(cached, 1000);
  r = RunShell(env + Bin() + " run -p 'Once upon a time' -n 8 --temp 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(std::filesystem::file_size(cached), std::filesystem::file_size(testing::StoriesModel()));

  r = RunShell(env + Bin() + " run --synthetic -p hi -n 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("RANDOM weights"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "tierlm" / "synth-small-llama-q4_0.gguf"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
