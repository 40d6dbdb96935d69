// Through the binary: a context whose KV cache is several times its memory share spills to
// disk, gives the greedy tokens of the unlimited run, and the process stays within the
// budget (peak RSS <= --mem-budget + 64 MiB).
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <regex>
#include <string>

#include "cli_runner.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

double PeakRssMiB(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("peak RSS ([0-9.]+) MiB"))) return -1;
  return std::stod(m[1]);
}

TEST(CliKvSpillTest, ALongPromptUnderABudgetSpillsKvKeepsTheTokensAndTheMemoryBound) {
  const std::string model = testing::SynthModel("small", "q4_0").string();
  const auto dir = testing::ScratchDir("kv-spill");
  // About 3100 tokens of text: f32 keys and values of 8 layers, 16 KiB a position: 48 MiB.
  const std::string prompt = (dir / "prompt.txt").string();
  {
    std::ofstream f(prompt);
    std::mt19937 rng(3);
    const char* words[] = {"river", "stone", "light", "house", "garden", "window", "winter", "silver", "meadow"};
    for (int i = 0; i < 900; ++i) f << words[rng() % 9] << (i % 13 == 12 ? ".\n" : " ");
  }
  const std::string base = Quote(testing::TierlmBinary()) + " run -m " + Quote(model) +
                           " -c 4096 -ctk f32 -ctv f32 -n 24 --token-ids --no-display-prompt -t 2 -f " + Quote(prompt) +
                           " --kv-spill-dir " + Quote(dir.string());
  const auto ref = RunShell(base, false);
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  ASSERT_FALSE(ref.output.empty());

  // The smallest budget plan names, and one between it and the whole cache.
  const auto plan = RunShell(Quote(testing::TierlmBinary()) + " plan -m " + Quote(model) +
                             " -c 4096 -ctk f32 -ctv f32 --no-measure --mem-budget 1G");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(plan.output, m, std::regex("smallest workable budget ([0-9.]+) MiB"))) << plan.output;
  const double least_mib = std::stod(m[1]);
  for (const double budget_mib : {least_mib + 1, least_mib + 40}) {
    const std::string budget = std::to_string(static_cast<int>(budget_mib)) + "M";
    SCOPED_TRACE("--mem-budget " + budget);
    const auto run = RunShell("{ " + base + " --mem-budget " + budget + " >" + Quote((dir / "tokens.txt").string()) + "; }");
    ASSERT_EQ(run.exit_code, 0) << run.output;
    std::ifstream t(dir / "tokens.txt");
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(t)), std::istreambuf_iterator<char>()), ref.output);
    const std::string& err = run.output;  // stderr: the stats
    EXPECT_NE(err.find("KV cache: tiered"), std::string::npos) << err;
    std::smatch w;
    ASSERT_TRUE(std::regex_search(err, w, std::regex("([0-9.]+) (KiB|MiB|GiB) written to the spill file"))) << err;
    EXPECT_GT(std::stod(w[1]), 0.0) << err;
    const double rss = PeakRssMiB(err);
    ASSERT_GT(rss, 0) << err;
    EXPECT_LE(rss, static_cast<int>(budget_mib) + 64) << err;
  }
  std::filesystem::remove_all(dir);  // nothing of the spill file is left in it
}

}  // namespace
}  // namespace tierlm
