// Odd flag values never crash the tierlm binary: for every command and each of its value
// flags, negative, zero, huge, non-numeric and empty values either work (exit 0) or are
// refused with one "error: " line and exit status 2; never a signal, never another
// status, never a hang (each run is under `timeout 60`, whose 124 would fail the case).
// Then the specific bugs this sweep was written for.
#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "synth/synth_model.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::CommandResult;
using testing::Quote;
using testing::RunShell;

// Where the sweep's models and outputs live. The paths are fixed before the cases are
// generated (at test registration); each file is written when a case first needs it (CTest
// runs every case in a process of its own) and all are removed at the end.
struct SweepFiles {
  std::filesystem::path dir;
  std::string dense, moe, trace;
  bool have_dir = false, have_dense = false, have_moe = false, have_trace = false;
};

SweepFiles& Files() {
  static SweepFiles f = [] {
    SweepFiles x;
    x.dir = std::filesystem::temp_directory_path() / ("tierlm-test-cli-flag-sweep-" + std::to_string(::getpid()));
    x.dense = (x.dir / "tiny.gguf").string();
    x.moe = (x.dir / "moe.gguf").string();
    x.trace = (x.dir / "routing.trace").string();
    return x;
  }();
  return f;
}

// What a case needs written first.
enum Need : unsigned { kDir = 0, kDense = 1, kMoe = 2, kTrace = 4 };

// Writes what `needs` asks for and is not there yet: the 2-layer tiny models (dense
// llama, moe-tiny) and a routing trace recorded from the MoE one.
void Ensure(unsigned needs) {
  SweepFiles& f = Files();
  if (!f.have_dir) {
    std::filesystem::remove_all(f.dir);
    std::filesystem::create_directories(f.dir);
    f.have_dir = true;
  }
  ThreadPool pool(2);
  if ((needs & kDense) && !f.have_dense) {
    auto dense = SynthPreset("tiny", "llama");
    dense->n_layer = 2;
    ASSERT_TRUE(WriteSynthModel(*dense, SynthType::kQ8_0, 1, f.dense, &pool).ok());
    f.have_dense = true;
  }
  if ((needs & (kMoe | kTrace)) && !f.have_moe) {
    auto moe = SynthPreset("moe-tiny", "llama");
    ASSERT_TRUE(moe.has_value());
    moe->n_layer = 2;
    ASSERT_TRUE(WriteSynthModel(*moe, SynthType::kQ8_0, 1, f.moe, &pool).ok());
    f.have_moe = true;
  }
  if ((needs & kTrace) && !f.have_trace) {
    auto r = RunShell(Quote(testing::TierlmBinary()) + " trace -m " + Quote(f.moe) + " -p hi -n 4 -t 2 -o " +
                      Quote(f.trace));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    f.have_trace = true;
  }
}

class RemoveSweepFiles : public ::testing::Environment {
 public:
  void TearDown() override { std::filesystem::remove_all(Files().dir); }
};
[[maybe_unused]] ::testing::Environment* const kRemoveSweepFiles =
    ::testing::AddGlobalTestEnvironment(new RemoveSweepFiles);

std::string Bin() { return "timeout 60 " + Quote(testing::TierlmBinary()); }

// One odd value of one flag of one command.
struct FlagCase {
  std::string name;     // readable test name: run_t_huge
  std::string command;  // the shell command line
  unsigned needs = kDense;
};

std::string Sanitize(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  while (!out.empty() && out.front() == '_') out.erase(out.begin());
  std::string squeezed;
  for (char c : out)
    if (!(c == '_' && !squeezed.empty() && squeezed.back() == '_')) squeezed += c;
  return squeezed;
}

// Value sets by kind of flag: {label, value}.
using Values = std::vector<std::pair<std::string, std::string>>;
const Values kInt = {{"neg", "-1"},        {"negbig", "-100000"},
                     {"zero", "0"},        {"big", "100000"},
                     {"huge", "99999999999999999999"},
                     {"nonnum", "abc"},    {"empty", ""},
                     {"frac", "1.5"}};
const Values kFloat = {{"neg", "-1"},     {"zero", "0"},       {"big", "1e30"}, {"huge", "1e999"},
                       {"nan", "nan"},    {"nonnum", "abc"},   {"empty", ""},   {"two", "2"}};
const Values kString = {{"empty", ""}, {"garbage", "no-such-thing"}};
// Output paths: nothing lands in the working directory.
const Values kOutput = {{"empty", ""}, {"nodir", "/nonexistent/dir/out"}};
const Values kSize = {{"zero", "0"},     {"one", "1"},         {"neg", "-1G"},   {"huge", "1e30G"},
                      {"nonnum", "abc"}, {"unit", "6Q"},       {"empty", ""},    {"nan", "nan"}};
// bench -p / -n lists. No 100000 here: a 100000-token test is valid, only slow.
const Values kList = {{"neg", "-1"},       {"zero", "0"},        {"huge", "99999999999999999999"},
                      {"kv", "1000000000000"}, {"nonnum", "abc"}, {"empty", ""},
                      {"commas", "1,,2"},  {"trailing", "1,"}};

Values Without(Values v, const std::vector<std::string>& labels) {
  std::erase_if(v, [&](const auto& x) { return std::find(labels.begin(), labels.end(), x.first) != labels.end(); });
  return v;
}

std::vector<FlagCase> Cases() {
  const SweepFiles& f = Files();
  const std::string M = Quote(f.dense), MOE = Quote(f.moe), D = f.dir.string();
  std::vector<FlagCase> out;
  // Each base command line is a working run; the odd flag comes last and wins.
  auto add = [&](const std::string& cmd, const std::string& base, const std::string& flag, const Values& values,
                 const std::string& pre = "") {
    const unsigned needs = base.find(f.trace) != std::string::npos ? kTrace
                           : base.find(f.moe) != std::string::npos ? kMoe
                           : base.find(f.dense) != std::string::npos ? kDense
                                                                     : kDir;
    for (const auto& [label, value] : values)
      out.push_back({Sanitize(cmd + "_" + flag + "_" + label),
                     pre + Bin() + " " + base + " " + flag + " " + Quote(value) + (pre.empty() ? " </dev/null" : ""),
                     needs});
  };
  // run: sampling on (no --temp 0) so the odd sampler values reach the sampler.
  const std::string run = "run -m " + M + " -p hi -n 2 -c 32 -t 2 --token-ids";
  for (const char* flag : {"-t", "-c", "-b", "-n", "--top-k", "--repeat-last-n", "--prefetch", "-s"})
    add("run", run, flag, kInt);
  for (const char* flag : {"--temp", "--top-p", "--min-p", "--repeat-penalty"}) add("run", run, flag, kFloat);
  add("run", run, "--mem-budget", kSize);
  for (const char* flag : {"-m", "--moe-policy", "--moe-miss", "-f", "--lowbit-cache"}) add("run", run, flag, kString);
  add("run", run, "-p", kString);
  const Values kKvType = {{"empty", ""}, {"garbage", "no-such-thing"}, {"weighttype", "q4_k"}, {"q8", "q8_0"}};
  for (const char* flag : {"-ctk", "-ctv"}) add("run", run, flag, kKvType);
  add("run", run, "--kv-block", kInt);
  // run under a budget that streams experts (the 2-layer moe-tiny needs 9.6M): --prefetch
  // and the MoE flags reach the tiered store.
  const std::string run_budget = "run -m " + MOE + " -p hi -n 2 -c 32 -t 2 --temp 0 --mem-budget 12M";
  add("run_budget", run_budget, "--prefetch", kInt);
  for (const char* flag : {"--moe-policy", "--moe-miss"}) add("run_budget", run_budget, flag, kString);
  // chat: the common flags are run's; its own, and a few that reach its loop.
  const std::string chat = "chat -m " + M + " -n 2 -c 64 -t 2";
  const std::string hi = "printf 'hi\\n' | ";
  for (const char* flag : {"-n", "-c", "-t", "-s"}) add("chat", chat, flag, kInt, hi);
  add("chat", chat, "--temp", kFloat, hi);
  add("chat", chat, "--top-p", kFloat, hi);
  add("chat", chat, "-sys", kString, hi);
  add("chat", chat, "--chat-template", kString, hi);
  // bench: -r 100000 is valid but takes minutes.
  const std::string bench = "bench -m " + M + " -p 4 -n 2 -r 1 -t 2 --no-bandwidth";
  add("bench", bench, "-p", kList);
  add("bench", bench, "-n", kList);
  add("bench", bench, "-r", Without(kInt, {"big"}));
  add("bench", bench, "-t", kInt);
  add("bench", bench, "-b", kInt);
  add("bench", bench, "--mem-budget", kSize);
  for (const char* flag : {"-o", "--moe-policy", "--moe-miss", "-m"}) add("bench", bench, flag, kString);
  add("bench", bench, "-d", kList);
  add("bench", bench, "--batch-seqs", Without(kInt, {"zero"}));
  add("bench", bench, "-ctk", kString);
  // plan
  const std::string plan = "plan -m " + M + " --no-measure";
  for (const char* flag : {"-c", "-b", "-t", "-np"}) add("plan", plan, flag, kInt);
  add("plan", plan, "--mem-budget", kSize);
  add("plan", plan, "-m", kString);
  add("plan", plan, "-ctv", kString);
  // synth: one layer of the tiny preset, so the zero and default cases write quickly.
  const std::string synth = "synth --preset tiny --layers 1 -t 2 -o " + Quote(D + "/synth.gguf");
  add("synth", synth, "--layers", kInt);
  add("synth", synth, "--vocab", Without(kInt, {"big"}));  // 100000 tokens is valid (about 30 MB)
  add("synth", synth, "--vocab", {{"toobig", "5000000"}, {"small", "100"}});
  add("synth", synth, "--seed", kInt);
  add("synth", synth, "-t", kInt);
  for (const char* flag : {"--preset", "--type", "--arch"}) add("synth", synth, flag, kString);
  add("synth", synth, "-o", kOutput);
  // trace and moe-report on the MoE model.
  const std::string trace = "trace -m " + MOE + " -p hi -n 2 -c 32 -t 2 -o " + Quote(D + "/sweep.trace");
  for (const char* flag : {"-n", "-c", "-t", "-s"}) add("trace", trace, flag, kInt);
  add("trace", trace, "--temp", kFloat);
  for (const char* flag : {"-m", "-p"}) add("trace", trace, flag, kString);
  add("trace", trace, "-o", kOutput);
  const std::string trace_file = "trace -m " + MOE + " -n 2 -c 32 -t 2 -o " + Quote(D + "/sweep.trace");
  add("trace_file", trace_file, "-f", kString);
  const std::string report = "moe-report --trace " + Quote(f.trace);
  add("moe_report", report, "--trace", kString);
  add("moe_report", report, "--plot", kOutput);
  add("moe_report", report, "--seg-lengths", kInt);
  add("moe_report", report, "--seg-lengths", {{"list", "1,3,16"}, {"trailing", "4,"}, {"garbage", "4,x"}});
  add("moe_report", report, "--cache-ratios", kFloat);
  add("moe_report", report, "--cache-ratios", {{"list", "0.5,2"}, {"trailing", "1,"}, {"garbage", "1,x"}});
  const std::string record = "moe-report -m " + MOE + " -p hi -n 2 -c 32 -t 2";
  for (const char* flag : {"-n", "-c", "-t", "-s"}) add("moe_report_record", record, flag, kInt);
  add("moe_report_record", record, "--temp", kFloat);
  // inspect takes a file.
  out.push_back({"inspect_empty", Bin() + " inspect ''"});
  out.push_back({"inspect_missing", Bin() + " inspect /nonexistent.gguf"});
  out.push_back({"inspect_two_files", Bin() + " inspect " + M + " " + M});
  out.push_back({"inspect_tensors_value", Bin() + " inspect " + M + " --tensors=1"});
  // A value flag with no value, an unknown flag.
  out.push_back({"run_t_missing_value", Bin() + " run -m " + M + " -p hi -n 1 -t"});
  out.push_back({"run_unknown_flag", Bin() + " run -m " + M + " --threads-please 4"});
  out.push_back({"run_long_flag_inline_empty", Bin() + " run -m " + M + " -p hi -n 1 --threads="});
  return out;
}

class CliFlagSweepTest : public ::testing::TestWithParam<FlagCase> {};

TEST_P(CliFlagSweepTest, ExitsZeroOrTwoWithAnErrorLine) {
  ASSERT_NO_FATAL_FAILURE(Ensure(GetParam().needs));
  const CommandResult r = RunShell(GetParam().command);
  SCOPED_TRACE(GetParam().command);
  EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 2) << "exit " << r.exit_code << " (128 + N: signal N; 124: a hang)\n"
                                                    << r.output;
  if (r.exit_code != 0) {
    EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  }
  for (const char* crash : {"terminate called", "Segmentation", "Aborted", "core dumped"})
    EXPECT_EQ(r.output.find(crash), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(CliFlagSweep, CliFlagSweepTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<FlagCase>& info) { return info.param.name; });

// The bugs the sweep was written for, with their messages.
class CliFlagBugs : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Ensure(kDense)); }
  static std::string Run(const std::string& args) { return Bin() + " run -m " + Quote(Files().dense) + " " + args; }
};

TEST_F(CliFlagBugs, ThreadsAboveTheBoundAreRefused) {
  auto r = RunShell(Run("-p hi -n 1 -t 100000"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: -t 100000: at most 1024 threads"), std::string::npos) << r.output;
  // More threads than cores run (slower), with a note.
  const std::string more = std::to_string(DefaultThreadCount() + 1);
  r = RunShell(Run("-p hi -n 1 --temp 0 -t " + more));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: -t " + more + " is more threads than the"), std::string::npos) << r.output;
  // <= 0 means all cores, as llama.cpp's -t -1.
  for (const char* t : {"0", "-1"}) {
    r = RunShell(Run(std::string("-p hi -n 1 --temp 0 -v -t ") + t));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(std::to_string(DefaultThreadCount()) + " threads"), std::string::npos) << r.output;
  }
}

TEST_F(CliFlagBugs, ThreadsTheOsRefusesAreAnError) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory does not start under an address-space limit";
#endif
  // Under a 1 GiB address-space limit 1000 threads (8 MiB stacks) cannot start: the pool
  // reports it instead of std::terminate aborting (exit 134).
  auto r = RunShell("ulimit -v 1048576; " + Run("-p hi -n 1 --temp 0 -t 1000"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: cannot start 1000 threads"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
}

TEST_F(CliFlagBugs, HugeContextExitsTwo) {
  auto r = RunShell(Run("-p hi -n 1 -c 100000000"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("is too large"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lower the context size (-c)"), std::string::npos) << r.output;
}

TEST_F(CliFlagBugs, TopPAndMinPOutsideZeroOneAreRefused) {
  for (const char* flag : {"--top-p 2", "--top-p -0.5", "--min-p 1.5", "--min-p -1", "--repeat-penalty 0",
                           "--repeat-penalty -1", "--repeat-last-n -2"}) {
    auto r = RunShell(Run(std::string("-p hi -n 1 ") + flag));
    EXPECT_EQ(r.exit_code, 2) << flag << "\n" << r.output;
    const std::string name = std::string(flag).substr(0, std::string(flag).find(' '));
    EXPECT_NE(r.output.find("error: " + name), std::string::npos) << r.output;
  }
  for (const char* flag : {"--top-p 0", "--top-p 1", "--min-p 0", "--min-p 1", "--top-k -1", "--repeat-last-n -1",
                           "--repeat-penalty 1.3"}) {
    auto r = RunShell(Run(std::string("-p hi -n 2 ") + flag));
    EXPECT_EQ(r.exit_code, 0) << flag << "\n" << r.output;
  }
}

std::string TokenIds(const std::string& output) {
  // --token-ids prints the ids on the first line of stdout.
  std::istringstream in(output);
  std::string line;
  std::getline(in, line);
  return line;
}

TEST_F(CliFlagBugs, NegativeTemperatureIsGreedy) {
  auto greedy = RunShell(Run("-p 'Once upon a time' -n 8 --temp 0 --token-ids"), /*merge_stderr=*/false);
  ASSERT_EQ(greedy.exit_code, 0) << greedy.output;
  ASSERT_FALSE(TokenIds(greedy.output).empty());
  for (const char* t : {"-1", "-0.5"}) {
    auto r = RunShell(Run(std::string("-p 'Once upon a time' -n 8 --token-ids --temp ") + t), false);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(TokenIds(r.output), TokenIds(greedy.output)) << "--temp " << t;
  }
}

TEST_F(CliFlagBugs, SeedMinusOneDrawsAndPrintsASeed) {
  auto r = RunShell(Run("-p hi -n 4 --seed -1 --token-ids"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto at = r.output.find("seed: ");
  ASSERT_NE(at, std::string::npos) << r.output;
  // The printed seed repeats the run.
  const std::string seed = r.output.substr(at + 6, r.output.find(' ', at + 6) - at - 6);
  auto first = RunShell(Run("-p hi -n 4 --token-ids --seed " + seed), false);
  auto again = RunShell(Run("-p hi -n 4 --token-ids --seed " + seed), false);
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(TokenIds(first.output), TokenIds(again.output));
  r = RunShell(Run("-p hi -n 1 --seed -2"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("-1 (random)"), std::string::npos) << r.output;
}

TEST_F(CliFlagBugs, NegativeNGeneratesUntilTheContextIsFull) {
  auto r = RunShell(Run("-p hi -n -1 -c 16 --temp 0 --token-ids"), false);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::istringstream ids(TokenIds(r.output));
  int n = 0;
  for (std::string id; ids >> id;) ++n;
  EXPECT_GT(n, 4) << r.output;
  EXPECT_LE(n, 16) << r.output;
}

TEST_F(CliFlagBugs, EveryErrorExitsTwo) {
  // An I/O error (was exit 1), a too-small budget, a huge batch clamped to the context.
  auto r = RunShell(Run("-f /nonexistent/prompt.txt"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: /nonexistent/prompt.txt"), std::string::npos) << r.output;
  r = RunShell(Run("-p hi -n 1 --mem-budget 1K"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunShell(Run("-p hi -n 1 --temp 0 -b 1000000000000"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = RunShell(Run("-p hi -n 1 --mem-budget 1e30G"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: --mem-budget: size '1e30G' is too large"), std::string::npos) << r.output;
}

TEST_F(CliFlagBugs, SynthRefusesShapesItCannotWrite) {
  const std::string out = Quote((Files().dir / "big.gguf").string());
  auto r = RunShell(Bin() + " synth --preset tiny --layers 100000 -o " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--layers 100000: must be 1 to 512"), std::string::npos) << r.output;
  r = RunShell(Bin() + " synth --preset llama2-7b --vocab 1000000000 -o " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--vocab 1000000000: must be 260 to 1048576"), std::string::npos) << r.output;
  // 512 layers of Mixtral-8x7B in f32 take about 2.9 TB: more than the disk (checked first,
  // so that a machine with that much free space is not filled).
  struct statvfs vfs;
  ASSERT_EQ(::statvfs(Files().dir.c_str(), &vfs), 0);
  if (static_cast<double>(vfs.f_bavail) * vfs.f_frsize < 2e12) {
    r = RunShell(Bin() + " synth --preset mixtral-8x7b --type f32 --layers 512 -o " + out);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("free: use fewer --layers"), std::string::npos) << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(Files().dir / "big.gguf"));
}

}  // namespace
}  // namespace tierlm
