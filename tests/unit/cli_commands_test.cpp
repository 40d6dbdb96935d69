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

// With the bandwidth probes on, a decode row carries both bounds: the triad's and the pure
// read's (the tighter one for decode, which only reads), each with its fraction.
TEST(CliCommandsTest, BenchDecodeRowsCarryTheTriadAndTheReadBound) {
  auto r = RunShell(Bin() + " bench -m " + Stories() + " -p 0 -n 4 -r 1 -t 2 -o json -q", false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto number = [&](const std::string& field) {
    const size_t at = r.output.find("\"" + field + "\": ");
    EXPECT_NE(at, std::string::npos) << field << " in " << r.output;
    return at == std::string::npos ? -1.0 : std::stod(r.output.substr(at + field.size() + 4));
  };
  EXPECT_GT(number("triad_bytes_per_s"), 0);
  EXPECT_GT(number("read_bytes_per_s"), 0);
  const double avg = number("avg_ts"), read_limit = number("read_limit_ts");
  EXPECT_GT(read_limit, 0);
  EXPECT_GT(number("bw_limit_ts"), 0);
  EXPECT_NEAR(number("read_fraction"), avg / read_limit, 1e-3 * (1 + avg / read_limit));
  r = RunShell(Bin() + " bench -m " + Stories() + " -p 0 -n 4 -r 1 -t 2 -q", false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(read: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("memory read bandwidth (a pure read of"), std::string::npos) << r.output;
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

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

// -ctk / -ctv choose the KV cache's types; a type the model's head size cannot take is a
// clear error; f32 and f16 KV give the same greedy tokens on stories260K here.
TEST(CliKvTypesTest, RunTakesKvTypesAndRefusesImpossibleOnes) {
  const std::string bin = Quote(testing::TierlmBinary());
  const std::string stories = Quote(testing::StoriesModel().string());
  auto f32 = RunShell(bin + " run -m " + stories + " -p 'Once upon a time' -n 24 --temp 0 --token-ids -q -ctk f32 -ctv f32", false);
  auto f16 = RunShell(bin + " run -m " + stories + " -p 'Once upon a time' -n 24 --temp 0 --token-ids -q", false);
  ASSERT_EQ(f32.exit_code, 0);
  ASSERT_EQ(f16.exit_code, 0);
  EXPECT_EQ(f32.output, f16.output);
  auto bad = RunShell(bin + " run -m " + stories + " -p hi -n 2 -ctk q8_0");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("-ctk q8_0"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("head size 8"), std::string::npos) << bad.output;
  bad = RunShell(bin + " run -m " + stories + " -p hi -n 2 -ctv q5_1");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("-ctv"), std::string::npos) << bad.output;
  const std::string tiny = Quote(testing::SynthModel("tiny", "q8_0").string());
  auto q = RunShell(bin + " run -m " + tiny + " -p 'Once upon a time' -n 8 --temp 0 --token-ids -q -ctk q8_0 -ctv q4_0", false);
  EXPECT_EQ(q.exit_code, 0);
  auto plan = RunShell(bin + " plan -m " + tiny + " --no-measure -c 1024 -ctk q8_0 -ctv q8_0");
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  auto plan16 = RunShell(bin + " plan -m " + tiny + " --no-measure -c 1024");
  ASSERT_EQ(plan16.exit_code, 0) << plan16.output;
  // KV bytes: tiny has 4 layers x 4 heads of 32 at 1024 positions: f16 1 MiB x 2, q8_0 34/64 of it.
  EXPECT_NE(plan16.output.find("KV cache 2.0 MiB"), std::string::npos) << plan16.output;
  EXPECT_NE(plan.output.find("KV cache 1.1 MiB"), std::string::npos) << plan.output;
}

// plan's prediction at a depth counts attention's time (its arithmetic and its reads of the
// keys and values, measured at 4096 keys): 16x the positions must cost over 4x the time,
// whatever the machine's noise between the two runs.
TEST(CliKvTypesTest, PlanPredictsDecodeWithAttentionCompute) {
  const std::string bin = Quote(testing::TierlmBinary());
  const std::string tiny = Quote(testing::SynthModel("tiny", "q8_0").string());
  auto attention_ms = [&](int64_t ctx, double* tps) {
    auto r = RunShell(bin + " plan -m " + tiny + " -t 2 -c " + std::to_string(ctx));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("decode attention "), std::string::npos) << r.output;
    const std::string at = "predicted decode at depth " + std::to_string(ctx) + ": ";
    const size_t p = r.output.find(at);
    const size_t a = r.output.find(" ms attention with those reads", p);
    if (p == std::string::npos || a == std::string::npos) {
      ADD_FAILURE() << r.output;
      return -1.0;
    }
    *tps = std::stod(r.output.substr(p + at.size()));
    const size_t comma = r.output.rfind(", ", a);
    return std::stod(r.output.substr(comma + 2, a - comma - 2));
  };
  double tps4k = 0, tps64k = 0;
  const double ms4k = attention_ms(4096, &tps4k), ms64k = attention_ms(65536, &tps64k);
  EXPECT_GT(ms4k, 0.0);
  EXPECT_GT(ms64k, 4 * ms4k);
  EXPECT_LT(tps64k, tps4k);
}

TEST(CliKvTypesTest, BenchRunsAtDepthAndWithSequencesTogether) {
  const std::string bin = Quote(testing::TierlmBinary());
  const std::string tiny = Quote(testing::SynthModel("tiny", "q8_0").string());
  auto r = RunShell(bin + " bench -m " + tiny + " -p 8 -n 4 -r 1 -t 2 -d 0,40 --batch-seqs 3 --no-bandwidth -q");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* want : {"| pp8 |", "| tg4 |", "| tg4 x3 |", "| pp8 @ d40 |", "| tg4 @ d40 |", "| tg4 x3 @ d40 |"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  r = RunShell(bin + " bench -m " + tiny + " -p 0 -n 2 -r 1 -t 2 -d 16 --batch-seqs 2 --no-bandwidth -q -o json -ctk q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"n_depth\": 16, \"n_seqs\": 2, \"type_k\": \"q8_0\""), std::string::npos) << r.output;
  // A lossy KV type reports its cost against f32 KV.
  r = RunShell(bin + " bench -m " + tiny + " -p 8 -n 2 -r 1 -t 2 --no-bandwidth -q -ctk q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("KV cache -ctk q8_0 -ctv f16 vs f32 over"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mean KL"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tierlm

namespace tierlm {
namespace {

// Through the binary: greedy tokens do not depend on how the prompt is cut into batches
// (-b), for weights whose matmuls are batch-invariant (F16), with the default f16 KV.
TEST(CliBatchInvarianceTest, PromptBatchSizeDoesNotChangeTokens) {
  const std::string bin = testing::Quote(testing::TierlmBinary());
  const std::string m = testing::Quote(testing::SynthModel("tiny", "f16").string());
  const std::string prompt =
      " -p 'One day, a girl named Mia found a shiny stone in the garden and she ran to show it to her mother' ";
  std::string first;
  for (const char* b : {"512", "7", "1"}) {
    auto r = testing::RunShell(bin + " run -m " + m + prompt + "-n 16 --temp 0 --token-ids -q -b " + b, false);
    ASSERT_EQ(r.exit_code, 0) << "-b " << b;
    ASSERT_FALSE(r.output.empty());
    if (first.empty()) first = r.output;
    EXPECT_EQ(r.output, first) << "-b " << b;
  }
}

}  // namespace
}  // namespace tierlm
