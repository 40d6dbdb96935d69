// Bad input reaches the user as one clear error naming the file and the fault, with exit
// status 2, never a crash or a hang.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "synth/synth_model.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

class CliErrorsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::ScratchDir("cli-errors");
    ThreadPool pool(2);
    auto spec = SynthPreset("tiny", "llama");
    spec->n_layer = 2;
    ASSERT_TRUE(WriteSynthModel(*spec, SynthType::kQ8_0, 1, (dir_ / "good.gguf").string(), &pool).ok());
    std::ifstream in(dir_ / "good.gguf", std::ios::binary);
    good_.assign(std::istreambuf_iterator<char>(in), {});
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) {
    const auto path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path.string();
  }

  // Runs `tierlm run` on the file and checks exit status 2 and the message.
  void ExpectRunError(const std::string& path, const std::string& expect, const std::string& extra = "") {
    auto r = RunShell(Quote(testing::TierlmBinary()) + " run -m " + Quote(path) + " -p hi -n 2 " + extra);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << "expected '" << expect << "' in: " << r.output;
    EXPECT_EQ(r.output.find("Segmentation"), std::string::npos);
  }

  static std::filesystem::path dir_;
  static std::string good_;
};
std::filesystem::path CliErrorsTest::dir_;
std::string CliErrorsTest::good_;

TEST_F(CliErrorsTest, GoodFileRuns) {
  auto r = RunShell(Quote(testing::TierlmBinary()) + " run -m " + Quote((dir_ / "good.gguf").string()) +
                    " -p hi -n 3 --temp 0 --token-ids");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(CliErrorsTest, TruncatedAtEverySection) {
  auto f = gguf::GgufFile::Open((dir_ / "good.gguf").string());
  ASSERT_TRUE(f.ok());
  const uint64_t first_tensor_name = f->data_offset() - 64;  // inside the tensor directory
  const std::vector<std::pair<uint64_t, std::string>> cuts = {
      {2, "not a GGUF file"},                       // inside the magic
      {10, "file is truncated"},                    // inside the counts
      {40, "file is truncated"},                    // inside the metadata
      {first_tensor_name, "file is truncated"},     // inside the tensor directory
      {f->data_offset() + 100, "ends past the end of the file"},  // inside the tensor data
      {good_.size() - 1, "ends past the end of the file"},        // one byte short
  };
  for (const auto& [len, expect] : cuts) {
    SCOPED_TRACE("cut at " + std::to_string(len));
    const std::string path = Write("cut" + std::to_string(len) + ".gguf", good_.substr(0, len));
    ExpectRunError(path, expect);
    ExpectRunError(path, path);
  }
}

TEST_F(CliErrorsTest, WrongMagicAndVersion) {
  std::string bad = good_;
  bad[0] = 'Z';
  ExpectRunError(Write("magic.gguf", bad), "not a GGUF file");
  std::string v = good_;
  v[4] = 9;
  ExpectRunError(Write("version.gguf", v), "GGUF version 9 is not supported");
}

TEST_F(CliErrorsTest, EmptyAndMissingFiles) {
  ExpectRunError(Write("empty.gguf", ""), "not a GGUF file");
  auto r = RunShell(Quote(testing::TierlmBinary()) + " run -m /nonexistent/x.gguf -p hi");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("no such file"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/x.gguf"), std::string::npos) << r.output;
}

// Rewrites the good model through the GGUF writer with one change.
std::string Rewrite(const std::filesystem::path& src, const std::filesystem::path& dst,
                    const std::function<void(gguf::GgufWriter&, const gguf::GgufFile&)>& edit,
                    const std::string& drop_tensor = "", const std::string& drop_key = "",
                    const std::string& retype_tensor = "") {
  auto f = gguf::GgufFile::Open(src.string());
  EXPECT_TRUE(f.ok());
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  gguf::GgufWriter w;
  for (const auto& kv : f->metadata())
    if (kv.key != drop_key) w.Set(kv.key, kv.value);
  for (const auto& t : f->tensors()) {
    if (t.name == drop_tensor) continue;
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    if (t.name == retype_tensor) {
      // Same byte count, declared as q5_K (unsupported): 256 elements per 176 bytes.
      EXPECT_TRUE(w.AddTensor(t.name, GgmlType::kQ5_K, {256}, std::vector<uint8_t>(176)).ok());
      continue;
    }
    std::vector<uint8_t> data(bytes.begin() + static_cast<std::ptrdiff_t>(t.file_offset),
                              bytes.begin() + static_cast<std::ptrdiff_t>(t.file_offset + t.size_bytes));
    EXPECT_TRUE(w.AddTensor(t.name, t.type, ne, std::move(data)).ok());
  }
  if (edit) edit(w, *f);
  EXPECT_TRUE(w.Write(dst.string()).ok());
  return dst.string();
}

TEST_F(CliErrorsTest, MissingTensorKeyAndUnknownArchitecture) {
  ExpectRunError(Rewrite(dir_ / "good.gguf", dir_ / "no-q.gguf", nullptr, "blk.1.attn_q.weight"),
                 "required tensor 'blk.1.attn_q.weight' is missing");
  ExpectRunError(Rewrite(dir_ / "good.gguf", dir_ / "no-key.gguf", nullptr, "", "llama.embedding_length"),
                 "required metadata key 'llama.embedding_length' is missing");
  ExpectRunError(Rewrite(dir_ / "good.gguf", dir_ / "arch.gguf",
                         [](gguf::GgufWriter& w, const gguf::GgufFile&) {
                           w.Set("general.architecture", gguf::Value::Str("mamba9"));
                         }),
                 "architecture 'mamba9' is not supported");
  ExpectRunError(Rewrite(dir_ / "good.gguf", dir_ / "absurd.gguf",
                         [](gguf::GgufWriter& w, const gguf::GgufFile&) {
                           w.Set("llama.block_count", gguf::Value::U32(4000000000u));
                         }),
                 "llama.block_count");
  ExpectRunError(Rewrite(dir_ / "good.gguf", dir_ / "heads.gguf",
                         [](gguf::GgufWriter& w, const gguf::GgufFile&) {
                           w.Set("llama.attention.head_count_kv", gguf::Value::U32(3));
                         }),
                 "head_count_kv");
}

TEST_F(CliErrorsTest, WrongShapeAndUnsupportedType) {
  ExpectRunError(Rewrite(dir_ / "good.gguf", dir_ / "type.gguf", nullptr, "", "", "blk.0.attn_norm.weight"),
                 "blk.0.attn_norm.weight");
  ExpectRunError(Rewrite(dir_ / "good.gguf", dir_ / "shape.gguf",
                         [](gguf::GgufWriter& w, const gguf::GgufFile&) {
                           w.Set("llama.feed_forward_length", gguf::Value::U32(1024));
                         }),
                 "expected [256, 1024]");
}

TEST_F(CliErrorsTest, PromptLongerThanContext) {
  std::string prompt;
  for (int i = 0; i < 50; ++i) prompt += "hello world ";
  auto r = RunShell(Quote(testing::TierlmBinary()) + " run -m " + Quote((dir_ / "good.gguf").string()) +
                    " -c 16 -n 4 -p " + Quote(prompt));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("but the context holds 16"), std::string::npos) << r.output;
}

TEST_F(CliErrorsTest, BadFlags) {
  auto r = RunShell(Quote(testing::TierlmBinary()) + " run --bogus");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown option '--bogus'"), std::string::npos) << r.output;
  r = RunShell(Quote(testing::TierlmBinary()) + " run -n lots");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("expected an integer"), std::string::npos) << r.output;
  r = RunShell(Quote(testing::TierlmBinary()) + " frobnicate");
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(CliErrorsTest, KvEvictionFlags) {
  const std::string good = (dir_ / "good.gguf").string();
  ExpectRunError(good, "--kv-max-tokens needs --kv-evict", "--kv-max-tokens 512");
  ExpectRunError(good, "needs --kv-max-tokens", "--kv-evict h2o");
  ExpectRunError(good, "unknown policy 'lru'", "--kv-evict lru --kv-max-tokens 512");
  ExpectRunError(good, "do not combine", "--kv-evict h2o --kv-max-tokens 512 --kv-sparse quest");
  ExpectRunError(good, "at least 80", "--kv-evict snapkv --kv-max-tokens 64");
  ExpectRunError(good, "--kv-evict-decay", "--kv-evict retention --kv-max-tokens 512 --kv-evict-decay 1.5");
  // serve takes --kv-evict (ServerHttpTest.KvEvict*), but not with a shared KV pool.
  auto r = RunShell("timeout 30 " + Quote(testing::TierlmBinary()) + " serve -m " + Quote(good) +
                    " --port 0 --kv-evict h2o --kv-max-tokens 512 --kv-unified");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("do not combine"), std::string::npos) << r.output;
  // A prompt longer than the bound runs: the cache is sized for the bound.
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "hello world ";
  r = RunShell(Quote(testing::TierlmBinary()) + " run -m " + Quote(good) +
               " -n 8 --temp 0 --kv-evict streaming --kv-max-tokens 80 -p " + Quote(prompt));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace tierlm
