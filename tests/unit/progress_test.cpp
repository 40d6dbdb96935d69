// Progress lines (core/progress.h): the format (amount, share, rate, time left, final line),
// the plain-line form off a terminal (at most one line per interval, nothing before the
// delay, a final line), the redrawn line on a terminal, quiet, threads; and end to end
// through the binary with stderr in a file (not a terminal): synth, load, prefill, the
// low-bit cache build and bench print progress lines, and --quiet silences them.
#include "core/progress.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "test_paths.h"

namespace tierlm {
namespace {

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;
constexpr int64_t kSecond = 1'000'000'000;

// A Progress on a fake clock writing into a string.
struct Fake {
  int64_t now = 0;
  std::string out;
  ProgressOptions Options(bool tty = false, int64_t interval_ms = 5000, int64_t delay_ms = 1000) {
    ProgressOptions o;
    o.tty = tty;
    o.interval_ms = interval_ms;
    o.delay_ms = delay_ms;
    o.now_nanos = [this] { return now; };
    o.write = [this](const std::string& s) { out += s; };
    return o;
  }
};

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

TEST(ProgressTest, FormatsBytesShareRateAndTimeLeft) {
  EXPECT_EQ(FormatProgressLine("synth", 4 * kGiB, 16 * kGiB, Progress::Unit::kBytes, "", 16.0, false),
            "synth: 4.0 GiB / 16.0 GiB (25%), 256 MiB/s, 48 s left");
  EXPECT_EQ(FormatProgressLine("synth", 16 * kGiB, 16 * kGiB, Progress::Unit::kBytes, "", 64.0, true),
            "synth: 16.0 GiB / 16.0 GiB (100%), 256 MiB/s, done in 1 min 4 s");
  EXPECT_EQ(FormatProgressLine("lowbit cache", 1200, 6000, Progress::Unit::kItems, "expert slices", 400.0, false),
            "lowbit cache: 1200 / 6000 expert slices (20%), 3.0/s, 27 min left");
  EXPECT_EQ(FormatProgressLine("prefill", 1024, 4096, Progress::Unit::kItems, "tokens", 2.0, false),
            "prefill: 1024 / 4096 tokens (25%), 512/s, 6 s left");
  // Nothing done yet, or no time passed: no rate and no estimate.
  EXPECT_EQ(FormatProgressLine("load", 0, 3 * kMiB, Progress::Unit::kBytes, "", 0.0, false), "load: 0 B / 3.0 MiB (0%)");
  // An unknown total: the amount and the rate only.
  EXPECT_EQ(FormatProgressLine("load", 512 * kMiB, 0, Progress::Unit::kBytes, "", 2.0, false),
            "load: 512 MiB, 256 MiB/s");
  // The share is rounded down: 100% only when done.
  EXPECT_EQ(FormatProgressLine("x", 999, 1000, Progress::Unit::kItems, "", 1.0, false),
            "x: 999 / 1000 (99%), 999/s, 1 s left");
}

TEST(ProgressTest, FormatsSizesAndTimes) {
  EXPECT_EQ(FormatProgressBytes(512), "512 B");
  EXPECT_EQ(FormatProgressBytes(12.3 * 1024), "12.3 KiB");
  EXPECT_EQ(FormatProgressBytes(310.0 * kMiB), "310 MiB");
  EXPECT_EQ(FormatProgressBytes(4.2 * kGiB), "4.2 GiB");
  EXPECT_EQ(FormatTimeLeft(0.2), "1 s");
  EXPECT_EQ(FormatTimeLeft(38.3), "39 s");
  EXPECT_EQ(FormatTimeLeft(28 * 60 + 10), "28 min");
  EXPECT_EQ(FormatTimeLeft(3600 + 5 * 60 + 10), "1 h 5 min");
  EXPECT_EQ(FormatElapsed(0.42), "0.4 s");
  EXPECT_EQ(FormatElapsed(54.2), "54 s");
  EXPECT_EQ(FormatElapsed(130), "2 min 10 s");
  EXPECT_EQ(FormatElapsed(3900), "1 h 5 min");
}

TEST(ProgressTest, PlainLinesAtMostOncePerIntervalAfterTheDelayThenAFinalLine) {
  Fake f;
  Progress p(f.Options(/*tty=*/false, /*interval_ms=*/5000, /*delay_ms=*/1000));
  p.Start("synth", 100 * kMiB, Progress::Unit::kBytes);
  f.now = kSecond / 2;
  p.Set(5 * kMiB);  // before the delay: nothing
  EXPECT_EQ(f.out, "");
  EXPECT_FALSE(p.printed());
  f.now = kSecond;
  p.Set(10 * kMiB);  // the first line once the delay has passed
  f.now = 2 * kSecond;
  p.Set(20 * kMiB);  // within the interval: nothing
  f.now = 6 * kSecond;
  p.Set(60 * kMiB);  // a second line
  f.now = 7 * kSecond;
  p.Advance(10 * kMiB);
  f.now = 8 * kSecond;
  p.Finish();
  p.Finish();  // idempotent
  p.Set(90 * kMiB);  // after Finish: ignored
  const auto lines = Lines(f.out);
  ASSERT_EQ(lines.size(), 3u) << f.out;
  EXPECT_EQ(lines[0], "synth: 10.0 MiB / 100 MiB (10%), 10.0 MiB/s, 9 s left");
  EXPECT_EQ(lines[1], "synth: 60.0 MiB / 100 MiB (60%), 10.0 MiB/s, 4 s left");
  EXPECT_EQ(lines[2], "synth: 70.0 MiB / 100 MiB (70%), 8.8 MiB/s, done in 8.0 s");
  EXPECT_EQ(f.out.find('\r'), std::string::npos);
}

TEST(ProgressTest, ReachingTheTotalPrintsTheFinalLine) {
  Fake f;
  Progress p(f.Options(false, 5000, 1000));
  p.Start("lowbit cache", 0, Progress::Unit::kItems, "expert slices");
  ProgressFn report = p.Reporter();
  f.now = 100 * kSecond;  // queued behind other work: the clock starts at (0, total)
  report(0, 6144);
  f.now = 110 * kSecond;
  report(30, 6144);
  f.now = 120 * kSecond;
  report(6144, 6144);
  report(6144, 6144);
  const auto lines = Lines(f.out);
  ASSERT_EQ(lines.size(), 2u) << f.out;
  EXPECT_EQ(lines[0], "lowbit cache: 30 / 6144 expert slices (0%), 3.0/s, 34 min left");
  EXPECT_EQ(lines[1], "lowbit cache: 6144 / 6144 expert slices (100%), 307/s, done in 20 s");
}

TEST(ProgressTest, ShortWorkPrintsNothing) {
  for (bool tty : {false, true}) {
    Fake f;
    Progress p(f.Options(tty, /*interval_ms=*/0, /*delay_ms=*/1000));
    p.Start("load", 0, Progress::Unit::kBytes);
    ProgressFn report = p.Reporter();
    report(0, 8 * kMiB);
    for (int i = 1; i <= 8; ++i) {
      f.now = i * kSecond / 10;
      report(i * kMiB, 8 * kMiB);
    }
    p.Finish();
    EXPECT_EQ(f.out, "") << (tty ? "terminal" : "plain");
  }
}

TEST(ProgressTest, LongWorkWithoutIntermediateLinesStillGetsAFinalLine) {
  Fake f;
  Progress p(f.Options(false, 10000, 1000));
  p.Start("bench", 4, Progress::Unit::kItems, "runs");
  f.now = kSecond / 2;
  p.Advance();  // before the delay
  f.now = 3 * kSecond;
  p.Finish();  // outlasted the delay: a final line even though none came before
  EXPECT_EQ(f.out, "bench: 1 / 4 runs (25%), 0.3/s, done in 3.0 s\n");
}

TEST(ProgressTest, QuietPrintsNothing) {
  for (bool tty : {false, true}) {
    Fake f;
    ProgressOptions o = f.Options(tty, 0, 0);
    o.quiet = true;
    Progress p(o);
    p.Start("synth", 100, Progress::Unit::kItems);
    for (int i = 1; i <= 100; ++i) {
      f.now = i * kSecond;
      p.Advance();
    }
    p.Finish();
    EXPECT_EQ(f.out, "");
    EXPECT_FALSE(p.printed());
  }
}

TEST(ProgressTest, TerminalRedrawsOneLineInPlaceAndEndsItWithANewline) {
  Fake f;
  Progress p(f.Options(/*tty=*/true, /*interval_ms=*/200, /*delay_ms=*/1000));
  p.Start("bench pp512", 12, Progress::Unit::kItems, "runs");
  f.now = 2 * kSecond;
  p.Advance();
  f.now = 2 * kSecond + kSecond / 10;
  p.Advance();  // within 200 ms: no redraw
  p.SetLabel("bench tg1");
  f.now = 3 * kSecond;
  p.Advance();
  f.now = 4 * kSecond;
  p.Set(12);
  EXPECT_EQ(f.out,
            "\rbench pp512: 1 / 12 runs (8%), 0.5/s, 22 s left"
            "\rbench tg1: 3 / 12 runs (25%), 1.0/s, 9 s left  "  // padded over the longer line
            "\rbench tg1: 12 / 12 runs (100%), 3.0/s, done in 4.0 s\n");
}

TEST(ProgressTest, AnUnfinishedTerminalLineIsClosedBeforeAnError) {
  Fake f;
  {
    Progress p(f.Options(true, 0, 0));
    p.Start("load", 10, Progress::Unit::kItems);
    f.now = kSecond;
    p.Set(3);
    p.Stop();  // the caller prints its error next
    EXPECT_EQ(f.out, "\rload: 3 / 10 (30%), 3.0/s, 3 s left\n");
  }
  EXPECT_EQ(f.out, "\rload: 3 / 10 (30%), 3.0/s, 3 s left\n");  // the destructor adds nothing more
  Fake g;
  {
    Progress p(g.Options(true, 0, 0));
    p.Start("load", 10, Progress::Unit::kItems);
    g.now = kSecond;
    p.Set(3);
  }
  EXPECT_EQ(g.out, "\rload: 3 / 10 (30%), 3.0/s, 3 s left\n");
}

TEST(ProgressTest, AdvanceFromManyThreadsCountsEveryUnit) {
  std::string out;
  std::mutex mu;
  ProgressOptions o;
  o.interval_ms = 1'000'000;
  o.delay_ms = 0;
  o.write = [&](const std::string& s) {
    std::lock_guard<std::mutex> lock(mu);
    out += s;
  };
  Progress p(o);
  p.Start("rows", 4 * 10000, Progress::Unit::kItems);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) p.Advance();
    });
  for (auto& t : threads) t.join();
  const auto lines = Lines(out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back().rfind("rows: 40000 / 40000 (100%)", 0), 0u) << out;
  EXPECT_NE(lines.back().find("done in"), std::string::npos) << out;
}

TEST(ProgressTest, EnvironmentSetsTheIntervalAndTheDelay) {
  ::setenv("TIERLM_PROGRESS_INTERVAL_MS", "250", 1);
  ::setenv("TIERLM_PROGRESS_DELAY_MS", "0", 1);
  ProgressOptions o = ProgressOptions::FromEnvironment(/*quiet=*/true);
  EXPECT_TRUE(o.quiet);
  EXPECT_EQ(o.interval_ms, 250);
  EXPECT_EQ(o.delay_ms, 0);
  ::setenv("TIERLM_PROGRESS_INTERVAL_MS", "soon", 1);  // malformed: the default
  ::unsetenv("TIERLM_PROGRESS_DELAY_MS");
  o = ProgressOptions::FromEnvironment(false);
  EXPECT_EQ(o.interval_ms, o.tty ? 200 : 10000);
  EXPECT_EQ(o.delay_ms, 1000);
  ::unsetenv("TIERLM_PROGRESS_INTERVAL_MS");
}

// End to end: stderr goes to a file (not a terminal); every update is due.
class ProgressCliTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::ScratchDir("progress-cli"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs `tierlm ARGS` with stderr in a file; returns stderr, *stdout_text gets stdout.
  std::string Run(const std::string& args, int* code, std::string* stdout_text = nullptr) {
    const std::string err = (dir_ / "stderr.txt").string();
    const auto r = testing::RunShell("(TIERLM_PROGRESS_INTERVAL_MS=0 TIERLM_PROGRESS_DELAY_MS=0 " +
                                     testing::Quote(testing::TierlmBinary()) + " " + args + " 2>" +
                                     testing::Quote(err) + ")");
    *code = r.exit_code;
    if (stdout_text) *stdout_text = r.output;
    std::ifstream in(err);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string Path(const std::string& name) const { return testing::Quote((dir_ / name).string()); }
  // The line of text starting with prefix and containing what, or "".
  static std::string LineWith(const std::string& text, const std::string& prefix, const std::string& what) {
    for (const auto& line : Lines(text))
      if (line.rfind(prefix, 0) == 0 && line.find(what) != std::string::npos) return line;
    return "";
  }

  std::filesystem::path dir_;
};

TEST_F(ProgressCliTest, SynthLoadPrefillLowbitAndBenchPrintProgressAndQuietSilencesThem) {
  int code = -1;
  std::string out;
  // synth: bytes written.
  std::string err = Run("synth --preset tiny -o " + Path("tiny.gguf"), &code, &out);
  ASSERT_EQ(code, 0) << err;
  EXPECT_NE(out.find("wrote"), std::string::npos) << out;
  EXPECT_EQ(out.find("synth:"), std::string::npos) << "progress goes to stderr, not stdout: " << out;
  const std::string synth_final = LineWith(err, "synth: ", "(100%)");
  EXPECT_NE(synth_final, "") << err;
  EXPECT_NE(synth_final.find("MiB / "), std::string::npos) << synth_final;
  EXPECT_NE(synth_final.find("/s, done in "), std::string::npos) << synth_final;
  EXPECT_NE(LineWith(err, "synth: ", " left"), "") << err;  // an intermediate line with the estimate
  EXPECT_EQ(err.find('\r'), std::string::npos) << "stderr is no terminal: plain lines";
  err = Run("synth -q --preset tiny -o " + Path("tiny-q.gguf"), &code);
  ASSERT_EQ(code, 0) << err;
  EXPECT_EQ(err, "");

  // run: the weights read at load, the prompt's prefill.
  err = Run("run -m " + Path("tiny.gguf") + " -p 'Once upon a time' -n 1 --temp 0", &code, &out);
  ASSERT_EQ(code, 0) << err;
  EXPECT_NE(LineWith(err, "load: ", "(100%)"), "") << err;
  EXPECT_NE(LineWith(err, "prefill: ", " tokens (100%)"), "") << err;
  EXPECT_EQ(out.rfind("Once upon a time", 0), 0u) << "the prompt is still echoed first: " << out;
  err = Run("run --quiet -m " + Path("tiny.gguf") + " -p 'Once upon a time' -n 1 --temp 0", &code);
  ASSERT_EQ(code, 0) << err;
  EXPECT_EQ(err.find("%)"), std::string::npos) << err;
  EXPECT_NE(err.find("load: "), std::string::npos) << "the statistics stay: " << err;

  // The low-bit cache build on a one-layer MoE model (lowbit-all under a budget always
  // uses the copies).
  err = Run("synth -q --preset moe-tiny --layers 1 -o " + Path("moe.gguf"), &code);
  ASSERT_EQ(code, 0) << err;
  const std::string moe_run =
      "-m " + Path("moe.gguf") + " --mem-budget 64M -c 64 --moe-miss lowbit-all -p hi -n 1 --temp 0";
  err = Run("run " + moe_run, &code);
  ASSERT_EQ(code, 0) << err;
  const std::string lowbit_final = LineWith(err, "lowbit cache: ", "(100%)");
  EXPECT_NE(lowbit_final, "") << err;
  EXPECT_NE(lowbit_final.find(" expert slices (100%), "), std::string::npos) << lowbit_final;
  EXPECT_NE(LineWith(err, "lowbit cache: ", " left"), "") << err;
  EXPECT_NE(LineWith(err, "load: ", "(100%)"), "") << "the pinned set under the budget: " << err;
  std::filesystem::remove(dir_ / "moe.gguf.tierlm-lowbit");
  err = Run("run -q " + moe_run, &code);
  ASSERT_EQ(code, 0) << err;
  EXPECT_NE(err.find("built low-bit expert cache"), std::string::npos) << "it was built again: " << err;
  EXPECT_EQ(err.find("%)"), std::string::npos) << err;

  // bench: one line over every run, named by the test.
  err = Run("bench -m " + Path("tiny.gguf") + " -p 8 -n 2 -r 2 --no-bandwidth", &code, &out);
  ASSERT_EQ(code, 0) << err;
  EXPECT_NE(LineWith(err, "bench pp8: ", "runs ("), "") << err;
  EXPECT_NE(LineWith(err, "bench tg2: ", "6 / 6 runs (100%)"), "") << err;
  EXPECT_NE(out.find("| tg2 |"), std::string::npos) << out;
  err = Run("bench -q -m " + Path("tiny.gguf") + " -p 8 -n 2 -r 2 --no-bandwidth", &code);
  ASSERT_EQ(code, 0) << err;
  EXPECT_EQ(err, "");

  // plan accepts -q like the others (it reads no weights: no progress either way).
  err = Run("plan -q -m " + Path("tiny.gguf") + " --no-measure", &code, &out);
  EXPECT_EQ(code, 0) << err << out;
}

}  // namespace
}  // namespace tierlm
