#include "format/gguf_file.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "format/gguf_writer.h"
#include "gguf_builder.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::GgufBytes;

Result<gguf::GgufFile> ParseBytes(const std::vector<uint8_t>& b) {
  MemoryByteSource src(b.data(), b.size());
  return gguf::GgufFile::Parse(src, "test.gguf");
}

// A valid file: two metadata keys, one f32 tensor of 8 elements.
GgufBytes ValidFile() {
  GgufBytes g;
  g.Header(3, 1, 2).KvStr("general.architecture", "llama").KvU32("llama.block_count", 2);
  g.Tensor("w", {8}, 0, 0).AlignTo(32).Zeros(32);
  return g;
}

TEST(GgufFileTest, ParsesHandBuiltFile) {
  auto f = ParseBytes(ValidFile().bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetU32("llama.block_count"), 2u);
  ASSERT_EQ(f->tensors().size(), 1u);
  EXPECT_EQ(f->tensors()[0].size_bytes, 32u);
  EXPECT_EQ(f->data_offset() % 32, 0u);
}

TEST(GgufFileTest, WriterRoundTripsEveryValueType) {
  gguf::GgufWriter w;
  using gguf::Value;
  using gguf::ValueType;
  Value u8; u8.type = ValueType::kUint8; u8.u64 = 200;
  Value i8; i8.type = ValueType::kInt8; i8.i64 = -100;
  Value u16; u16.type = ValueType::kUint16; u16.u64 = 60000;
  Value i16; i16.type = ValueType::kInt16; i16.i64 = -30000;
  Value i64; i64.type = ValueType::kInt64; i64.i64 = -(int64_t{1} << 40);
  Value f64; f64.type = ValueType::kFloat64; f64.f64 = 3.25;
  w.Set("a.u8", u8);
  w.Set("a.i8", i8);
  w.Set("a.u16", u16);
  w.Set("a.i16", i16);
  w.Set("a.u32", Value::U32(4000000000u));
  w.Set("a.i32", Value::I32(-5));
  w.Set("a.u64", Value::U64(uint64_t{1} << 50));
  w.Set("a.i64", i64);
  w.Set("a.f32", Value::F32(0.5f));
  w.Set("a.f64", f64);
  w.Set("a.bool", Value::Bool(true));
  w.Set("a.str", Value::Str("h\xC3\xA9llo"));
  w.Set("a.nested", Value::Array(ValueType::kArray, {Value::Array(ValueType::kInt32, {Value::I32(1), Value::I32(2)}),
                                                     Value::Array(ValueType::kInt32, {Value::I32(3)})}));
  w.Set("a.strs", Value::Array(ValueType::kString, {Value::Str("x"), Value::Str("")}));
  std::vector<uint8_t> data(4 * 6);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
  ASSERT_TRUE(w.AddTensor("t0", GgmlType::kF32, {3, 2}, data).ok());
  ASSERT_TRUE(w.AddTensor("t1", GgmlType::kQ8_0, {32}, std::vector<uint8_t>(34, 7)).ok());
  auto dir = testing::ScratchDir("gguf-roundtrip");
  const std::string path = (dir / "m.gguf").string();
  ASSERT_TRUE(w.Write(path).ok());

  auto f = gguf::GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->Find("a.u8")->u64, 200u);
  EXPECT_EQ(f->Find("a.i8")->i64, -100);
  EXPECT_EQ(f->Find("a.u16")->u64, 60000u);
  EXPECT_EQ(f->Find("a.i16")->i64, -30000);
  EXPECT_EQ(*f->GetU32("a.u32"), 4000000000u);
  EXPECT_EQ(*f->GetI64("a.i32"), -5);
  EXPECT_EQ(*f->GetU64("a.u64"), uint64_t{1} << 50);
  EXPECT_EQ(*f->GetI64("a.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(*f->GetF32("a.f32"), 0.5f);
  EXPECT_EQ(f->Find("a.f64")->f64, 3.25);
  EXPECT_TRUE(*f->GetBool("a.bool"));
  EXPECT_EQ(*f->GetString("a.str"), "h\xC3\xA9llo");
  const gguf::Value* nested = f->Find("a.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[0].items[1].i64, 2);
  EXPECT_EQ(nested->items[1].items[0].i64, 3);
  EXPECT_EQ((*f->GetStringArray("a.strs")), (std::vector<std::string>{"x", ""}));
  ASSERT_EQ(f->tensors().size(), 2u);
  const auto* t0 = f->FindTensor("t0");
  ASSERT_NE(t0, nullptr);
  EXPECT_EQ(t0->ne[0], 3);
  EXPECT_EQ(t0->ne[1], 2);
  EXPECT_EQ(t0->size_bytes, 24u);
  EXPECT_EQ(f->FindTensor("t1")->size_bytes, 34u);
  EXPECT_EQ(f->FindTensor("t1")->offset % 32, 0u);
  // Typed getters refuse the wrong type and name the key.
  auto wrong = f->GetString("a.u32");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("a.u32"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(GgufFileTest, ReadsStories260KHeader) {
  auto path = testing::StoriesModel();
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  auto f = gguf::GgufFile::Open(path.string());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->data_offset(), 14176u);
  EXPECT_EQ(f->FindTensor("blk.0.ffn_down.weight")->offset, 355840u);
  EXPECT_EQ(f->GetStringArray("tokenizer.ggml.tokens")->size(), 512u);
}

// Every prefix of a valid file is rejected with a clear message and no crash.
TEST(GgufFileTest, EveryTruncationIsAnError) {
  const auto full = ValidFile().bytes;
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    auto f = ParseBytes(cut);
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_NE(f.status().message().find("test.gguf"), std::string::npos) << f.status().message();
  }
}

struct CorruptCase {
  const char* name;
  std::vector<uint8_t> bytes;
  const char* expect;  // substring of the error message
};

std::vector<CorruptCase> CorruptCases() {
  std::vector<CorruptCase> cases;
  {
    auto g = ValidFile();
    g.bytes[0] = 'X';
    cases.push_back({"magic", g.bytes, "not a GGUF file"});
  }
  {
    GgufBytes g;
    g.Header(1, 0, 0);
    cases.push_back({"version 1", g.bytes, "version 1 is not supported"});
  }
  {
    GgufBytes g;
    g.Header(4, 0, 0);
    cases.push_back({"version 4", g.bytes, "version 4 is not supported"});
  }
  {
    GgufBytes g;
    g.Header(3, 0, uint64_t{1} << 60);
    cases.push_back({"absurd kv count", g.bytes, "metadata count"});
  }
  {
    GgufBytes g;
    g.Header(3, uint64_t{1} << 62, 0);
    cases.push_back({"absurd tensor count", g.bytes, "tensor count"});
  }
  {
    GgufBytes g;
    g.Header(3, 0, 1).Pod<uint64_t>(uint64_t{1} << 50).Zeros(16);
    cases.push_back({"absurd string length", g.bytes, "beyond the end of the file"});
  }
  {
    GgufBytes g;
    g.Header(3, 0, 1).Str("k").Pod<uint32_t>(9).Pod<uint32_t>(5).Pod<uint64_t>(uint64_t{1} << 61);
    cases.push_back({"absurd array length", g.bytes, "does not fit"});
  }
  {
    GgufBytes g;
    g.Header(3, 0, 1).Str("k").Pod<uint32_t>(77).Pod<uint32_t>(0);
    cases.push_back({"unknown value type", g.bytes, "unknown value type 77"});
  }
  {
    GgufBytes g;
    g.Header(3, 0, 2).KvU32("k", 1).KvU32("k", 2);
    cases.push_back({"duplicate key", g.bytes, "duplicate metadata key 'k'"});
  }
  {
    GgufBytes g;
    g.Header(3, 0, 1).KvU32("general.alignment", 24);
    cases.push_back({"alignment not a power of two", g.bytes, "not a power of two"});
  }
  {
    GgufBytes g;
    g.Header(3, 1, 0).Tensor("w", {1ull << 40, 1ull << 40}, 0, 0).AlignTo(32).Zeros(64);
    cases.push_back({"element count overflow", g.bytes, "overflow"});
  }
  {
    GgufBytes g;
    g.Header(3, 1, 0).Tensor("w", {8, 0}, 0, 0).AlignTo(32).Zeros(64);
    cases.push_back({"zero dimension", g.bytes, "invalid dimension"});
  }
  {
    GgufBytes g;
    g.Header(3, 1, 0).Str("w").Pod<uint32_t>(7).AlignTo(32).Zeros(64);
    cases.push_back({"too many dims", g.bytes, "7 dimensions"});
  }
  {
    GgufBytes g;
    g.Header(3, 1, 0).Tensor("w", {8}, 99, 0).AlignTo(32).Zeros(64);
    cases.push_back({"unknown ggml type", g.bytes, "unknown ggml type id 99"});
  }
  {
    GgufBytes g;
    g.Header(3, 1, 0).Tensor("w", {30}, 8, 0).AlignTo(32).Zeros(64);
    cases.push_back({"row not multiple of block", g.bytes, "not a multiple of the q8_0 block size"});
  }
  {
    GgufBytes g;
    g.Header(3, 1, 0).Tensor("w", {8}, 0, 16).AlignTo(32).Zeros(64);
    cases.push_back({"misaligned data", g.bytes, "not a multiple of the alignment"});
  }
  {
    GgufBytes g;
    g.Header(3, 1, 0).Tensor("w", {64}, 0, 0).AlignTo(32).Zeros(64);
    cases.push_back({"data beyond EOF", g.bytes, "ends past the end of the file"});
  }
  {
    GgufBytes g;
    g.Header(3, 2, 0).Tensor("w", {8}, 0, 0).Tensor("w", {8}, 0, 32).AlignTo(32).Zeros(64);
    cases.push_back({"duplicate tensor", g.bytes, "duplicate tensor name 'w'"});
  }
  {
    GgufBytes g;
    g.Header(3, 0, 1).Str("b").Pod<uint32_t>(7).Pod<uint8_t>(5);
    cases.push_back({"bool not 0/1", g.bytes, "neither 0 nor 1"});
  }
  return cases;
}

TEST(GgufFileTest, CorruptInputsGiveNamedErrors) {
  for (const auto& c : CorruptCases()) {
    auto f = ParseBytes(c.bytes);
    ASSERT_FALSE(f.ok()) << c.name;
    EXPECT_NE(f.status().message().find(c.expect), std::string::npos)
        << c.name << ": got '" << f.status().message() << "'";
    EXPECT_NE(f.status().message().find("test.gguf"), std::string::npos) << c.name;
  }
}

TEST(GgufFileTest, MissingFileIsNotFound) {
  auto f = gguf::GgufFile::Open("/nonexistent/dir/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("/nonexistent/dir/model.gguf"), std::string::npos);
}

}  // namespace
}  // namespace tierlm
