// Under --mem-budget: the same tokens as an unlimited run, process memory within the
// budget plus a fixed allowance, and a clear error (with the smallest workable budget)
// when the budget cannot run the model.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "synth/synth_model.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

class MemBudgetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::ScratchDir("mem-budget");
    // 8 layers of 512-wide f32: ~117 MiB of weights, so budgets well below the file size
    // must stream.
    auto spec = SynthPreset("small", "llama");
    ThreadPool pool(2);
    ASSERT_TRUE(WriteSynthModel(*spec, SynthType::kF32, 11, (dir_ / "m.gguf").string(), &pool).ok());
    ASSERT_TRUE(WriteSynthModel(*spec, SynthType::kQ4_K_M, 11, (dir_ / "q.gguf").string(), &pool).ok());
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  static std::string Run(const std::string& model, const std::string& extra, int* exit_code,
                         std::string* all_output = nullptr) {
    auto r = RunShell(Quote(testing::TierlmBinary()) + " run -m " + Quote((dir_ / model).string()) +
                      " -c 128 -p 'Once upon a time there was' -n 24 --temp 0 --token-ids " + extra);
    *exit_code = r.exit_code;
    if (all_output) *all_output = r.output;
    // The ids line: only digits and spaces (plan and statistics lines come from stderr).
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty() && line.find_first_not_of("0123456789 ") == std::string::npos) return line;
    return "";
  }

  static std::filesystem::path dir_;
};
std::filesystem::path MemBudgetTest::dir_;

TEST_F(MemBudgetTest, GreedyTokensIdenticalUnderEveryBudget) {
  for (const char* model : {"m.gguf", "q.gguf"}) {
    SCOPED_TRACE(model);
    int code = 0;
    const std::string unlimited = Run(model, "", &code);
    ASSERT_EQ(code, 0) << unlimited;
    ASSERT_FALSE(unlimited.empty());
    int ran = 0;
    for (const char* budget : {"200M", "60M", "40M", "28M"}) {
      std::string all;
      const std::string ids = Run(model, std::string("--mem-budget ") + budget + " -v", &code, &all);
      if (code != 0 && all.find("too small") != std::string::npos) continue;  // below this model's minimum
      ASSERT_EQ(code, 0) << budget << ": " << all;
      EXPECT_EQ(ids, unlimited) << "budget " << budget;
      ++ran;
    }
    EXPECT_GE(ran, 3) << "too few budgets were above the model's minimum";
  }
}

TEST_F(MemBudgetTest, SmallBudgetActuallyStreams) {
  int code = 0;
  std::string all;
  Run("m.gguf", "--mem-budget 40M -v", &code, &all);
  ASSERT_EQ(code, 0) << all;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(all, m, std::regex("reads ([0-9]+) \\(([0-9]+) B\\)"))) << all;
  EXPECT_GT(std::stoull(m[2]), 117ull << 20) << "24 tokens under 40M of a 117 MiB model must re-read weights";
}

TEST_F(MemBudgetTest, PeakRssWithinBudgetPlusAllowance) {
  for (const char* budget : {"40M", "64M"}) {
    int code = 0;
    std::string all;
    Run("m.gguf", std::string("--mem-budget ") + budget, &code, &all);
    ASSERT_EQ(code, 0) << all;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(all, m, std::regex("peak RSS ([0-9.]+) MiB"))) << all;
    const double peak_mib = std::stod(m[1]);
    const double budget_mib = std::stod(budget);
    EXPECT_LE(peak_mib, budget_mib + 64) << "budget " << budget << ": " << all;
  }
}

TEST_F(MemBudgetTest, TooSmallBudgetNamesTheSmallestThatWorks) {
  int code = 0;
  std::string all;
  Run("m.gguf", "--mem-budget 4M", &code, &all);
  EXPECT_EQ(code, 2) << all;
  EXPECT_NE(all.find("is too small"), std::string::npos) << all;
  EXPECT_NE(all.find("the smallest budget that runs it is"), std::string::npos) << all;
  // The plan command says the same before anything is allocated.
  auto r = RunShell(Quote(testing::TierlmBinary()) + " plan -m " + Quote((dir_ / "m.gguf").string()) +
                    " --mem-budget 4M -c 128 --no-measure");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("the smallest budget that runs it is"), std::string::npos) << r.output;
}

TEST_F(MemBudgetTest, PlanListsPlacement) {
  auto r = RunShell(Quote(testing::TierlmBinary()) + " plan -m " + Quote((dir_ / "m.gguf").string()) +
                    " --mem-budget 40M -c 128 --no-measure --tensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("streamed from disk"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("memory (pinned)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("per generated token"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tierlm
