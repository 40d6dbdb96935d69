// `tierlm run --prefix-cache-dir`: a second run with the same long prompt starts from the
// blocks the first one left on disk, with the same tokens; the prefix flags' errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli_runner.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

std::string LongPrompt() {
  std::string p;
  for (int i = 0; i < 30; ++i) p += "Once upon a time there was a little girl named Lily who loved to play in the park. ";
  return p;
}

std::string RunCmd(const std::string& extra) {
  return testing::TierlmBinary() + " run -m " + Quote(testing::StoriesModel().string()) +
         " -c 2048 -n 12 --temp 0 --token-ids -q -p " + Quote(LongPrompt()) + " " + extra;
}

// The generated ids: stdout's first line.
std::string Ids(const std::string& cmd) {
  const auto r = RunShell(cmd, /*merge_stderr=*/false);
  EXPECT_EQ(r.exit_code, 0) << cmd;
  return r.output.substr(0, r.output.find('\n'));
}

TEST(CliPrefixCacheTest, ASecondRunWithTheSameLongPromptStartsFromTheDiskWithTheSameTokens) {
  const auto dir = testing::ScratchDir("cli-prefix") / "cache";
  const std::string cold = Ids(RunCmd(""));
  ASSERT_FALSE(cold.empty());
  const auto first = RunShell(RunCmd("--prefix-cache-dir " + Quote(dir.string())));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("prefix cache: 0 of "), std::string::npos) << first.output;
  EXPECT_EQ(first.output.substr(0, first.output.find('\n')), cold);
  const auto second = RunShell(RunCmd("--prefix-cache-dir " + Quote(dir.string())));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(second.output.substr(0, second.output.find('\n')), cold) << "a disk hit changes no token";
  // Every full block of the prompt but the one holding its last token: all but < 16 tokens.
  const auto at = second.output.find("prefix cache: ");
  ASSERT_NE(at, std::string::npos) << second.output;
  const long reused = std::atol(second.output.c_str() + at + 14);
  const auto of = second.output.find(" of ", at);
  const long n_prompt = std::atol(second.output.c_str() + of + 4);
  EXPECT_GT(n_prompt, 700);
  EXPECT_GT(reused, n_prompt - 16) << second.output;
  EXPECT_NE(second.output.find("(disk " + std::to_string(reused)), std::string::npos) << second.output;
  // Another KV format misses (and still answers).
  const auto bf16 = RunShell(RunCmd("-ctk bf16 --prefix-cache-dir " + Quote(dir.string())));
  ASSERT_EQ(bf16.exit_code, 0) << bf16.output;
  EXPECT_NE(bf16.output.find("prefix cache: 0 of "), std::string::npos) << bf16.output;
  std::filesystem::remove_all(dir.parent_path());
}

TEST(CliPrefixCacheTest, BadPrefixFlagsAreClearErrors) {
  struct Case {
    std::string flags, want;
  };
  const std::vector<Case> cases = {
      {"--prefix-cache-dir /tmp/x --prefix-cache-size 0", "--prefix-cache-size must be positive"},
      {"--prefix-cache-dir /tmp/x --prefix-cache-size lots", "--prefix-cache-size"},
      {"--prefix-cache-dir /proc/version/cache", "--prefix-cache-dir"},
      {"--redis http://127.0.0.1:6379", "--redis"},
      {"--redis redis://127.0.0.1:99999", "--redis"},
      {"--redis redis://127.0.0.1:6379 --redis-ttl -5", "--redis-ttl must not be negative"},
  };
  for (const Case& c : cases) {
    const auto r = RunShell(RunCmd(c.flags));
    EXPECT_EQ(r.exit_code, 2) << c.flags << "\n" << r.output;
    EXPECT_NE(r.output.find(c.want), std::string::npos) << c.flags << "\n" << r.output;
  }
  // Serve refuses --no-prefix-cache with a tier.
  const auto r = RunShell(testing::TierlmBinary() + " serve --no-prefix-cache --prefix-cache-dir /tmp/x --port 0");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--no-prefix-cache contradicts"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tierlm
