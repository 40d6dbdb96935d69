// Token ids against llama.cpp's tokenizer test vectors (fixtures/tokenizer/*.inp/.out),
// round trips through the detokenizer, and the stories260K vocabulary.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "format/gguf_file.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace tierlm::tokenizer {
namespace {

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// .inp: test strings, each followed by "\n__ggml_vocab_test__\n" (so the file ends with
// the separator, an empty string is "\n__ggml..." right after the previous separator,
// and a string may itself contain or end with newlines).
std::vector<std::string> ReadInputs(const std::filesystem::path& path) {
  const std::string text = ReadAll(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t next = text.find(sep, pos);
    if (next == std::string::npos) break;
    out.push_back(text.substr(pos, next - pos));
    pos = next + sep.size();
  }
  return out;
}

// .out: one line per string, ids separated by spaces (each preceded by one).
std::vector<std::vector<int32_t>> ReadOutputs(const std::filesystem::path& path) {
  std::istringstream in(ReadAll(path));
  std::vector<std::vector<int32_t>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    int64_t id;
    while (ls >> id) ids.push_back(static_cast<int32_t>(id));
    out.push_back(std::move(ids));
  }
  return out;
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += " " + std::to_string(id);
  return s;
}

std::string Escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

Tokenizer LoadTokenizer(const std::filesystem::path& path) {
  Result<gguf::GgufFile> file = gguf::GgufFile::Open(path.string());
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) std::abort();
  Result<Tokenizer> tok = Tokenizer::FromGguf(*file);
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  if (!tok.ok()) std::abort();
  return std::move(tok).value();
}

class TokenizerFixtureTest : public ::testing::TestWithParam<const char*> {
 protected:
  // tokenizer/ggml-vocab-NAME.gguf (built from its .xz), with .inp/.out committed beside it.
  std::string Rel() const { return "tokenizer/ggml-vocab-" + std::string(GetParam()) + ".gguf"; }
  std::filesystem::path Base() const { return testing::Fixture(Rel()); }
  std::string Inputs() const { return testing::Fixture(Rel() + ".inp").string(); }
  std::string Outputs() const { return testing::Fixture(Rel() + ".out").string(); }
};

TEST_P(TokenizerFixtureTest, EncodeMatchesLlamaCpp) {
  const auto base = Base();
  ASSERT_TRUE(std::filesystem::exists(base)) << base;
  const std::vector<std::string> inputs = ReadInputs(Inputs());
  const std::vector<std::vector<int32_t>> outputs = ReadOutputs(Outputs());
  ASSERT_GE(inputs.size(), 40u);
  ASSERT_EQ(inputs.size(), outputs.size());
  const Tokenizer tok = LoadTokenizer(base);

  int failures = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t> got = tok.Encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
    if (got != outputs[i]) {
      ++failures;
      ADD_FAILURE() << GetParam() << " case " << i << " '" << Escaped(inputs[i]) << "'\n  want:" << Ids(outputs[i])
                    << "\n  got: " << Ids(got);
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST_P(TokenizerFixtureTest, DecodeRoundTrips) {
  const auto base = Base();
  ASSERT_TRUE(std::filesystem::exists(base)) << base;
  const std::vector<std::string> inputs = ReadInputs(Inputs());
  ASSERT_GE(inputs.size(), 40u);
  const Tokenizer tok = LoadTokenizer(base);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t> ids = tok.Encode(inputs[i], false, false);
    EXPECT_EQ(tok.Decode(ids), inputs[i]) << GetParam() << " case " << i;
  }
}

// Random valid text from a mixed alphabet round-trips; random bytes (invalid UTF-8 included)
// never produce an out-of-range id.
TEST_P(TokenizerFixtureTest, RandomTextRoundTripsAndBytesAreSafe) {
  const auto base = Base();
  ASSERT_TRUE(std::filesystem::exists(base)) << base;
  const Tokenizer tok = LoadTokenizer(base);
  const char* alphabet[] = {"a", "Z", " ", "  ", "\n", "\r\n", "\t", "7", "42", "'s", "'LL", ".", "!?", "<|", "|>",
                            "é", "ö", "я", "我", "\xF0\x9F\xA6\x99", "\xE3\x80\x80", "\xC2\xA0"};
  // (No literal U+2581: SentencePiece cannot tell it from an escaped space.)
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text;
    const int n = 1 + rng() % 40;
    for (int i = 0; i < n; ++i) text += alphabet[rng() % std::size(alphabet)];
    const std::vector<int32_t> ids = tok.Encode(text, false, false);
    ASSERT_EQ(tok.Decode(ids), text) << GetParam() << " '" << Escaped(text) << "'" << Ids(ids);
  }
  for (int trial = 0; trial < 200; ++trial) {
    std::string bytes(rng() % 40, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    for (int32_t id : tok.Encode(bytes, true, true)) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, tok.n_tokens());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerFixtureTest,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-llm", "starcoder"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

TEST(TokenizerFixtures, VocabMetadata) {
  const Tokenizer spm = LoadTokenizer(testing::Fixture("tokenizer/ggml-vocab-llama-spm.gguf"));
  EXPECT_EQ(spm.vocab().type, VocabType::kSpm);
  EXPECT_EQ(spm.n_tokens(), 32000);
  EXPECT_TRUE(spm.vocab().add_bos);
  EXPECT_FALSE(spm.vocab().add_eos);
  EXPECT_TRUE(spm.vocab().add_space_prefix);
  EXPECT_TRUE(spm.IsEog(2));
  EXPECT_FALSE(spm.IsEog(1));
  EXPECT_EQ(spm.Encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));

  const Tokenizer gpt2 = LoadTokenizer(testing::Fixture("tokenizer/ggml-vocab-gpt-2.gguf"));
  EXPECT_EQ(gpt2.vocab().type, VocabType::kBpe);
  EXPECT_EQ(gpt2.vocab().pre_kind, PreTokenizerKind::kGpt2);
  EXPECT_FALSE(gpt2.vocab().add_bos);  // gpt-2: BPE adds no BOS unless the file says so
  EXPECT_TRUE(gpt2.IsEog(50256));
  // <|endoftext|> is a control token: plain text unless parse_special.
  EXPECT_EQ(gpt2.Encode("a<|endoftext|>", false, true), (std::vector<int32_t>{64, 50256}));
  EXPECT_NE(gpt2.Encode("a<|endoftext|>", false, false), (std::vector<int32_t>{64, 50256}));
  EXPECT_EQ(gpt2.TokenToPiece(18435), " Hello");
  EXPECT_EQ(gpt2.TokenToPiece(50256), "<|endoftext|>");
  EXPECT_EQ(gpt2.TokenToPiece(50256, /*render_special=*/false), "");

  const Tokenizer phi3 = LoadTokenizer(testing::Fixture("tokenizer/ggml-vocab-phi-3.gguf"));
  EXPECT_FALSE(phi3.vocab().chat_template.empty());
  const int32_t end = phi3.vocab().Find("<|end|>");
  ASSERT_NE(end, kNoToken);
  EXPECT_TRUE(phi3.IsEog(end));
  EXPECT_TRUE(phi3.IsEog(32000));  // eos_token_id = <|endoftext|>

  const Tokenizer deepseek = LoadTokenizer(testing::Fixture("tokenizer/ggml-vocab-deepseek-llm.gguf"));
  EXPECT_TRUE(deepseek.vocab().add_bos);  // from tokenizer.ggml.add_bos_token
  EXPECT_EQ(deepseek.Encode("Hello", true, false).front(), 100000);
}

TEST(TokenizerFixtures, SpecialTokensParsedOnlyWhenAsked) {
  const Tokenizer phi3 = LoadTokenizer(testing::Fixture("tokenizer/ggml-vocab-phi-3.gguf"));
  const int32_t user = phi3.vocab().Find("<|user|>");
  const int32_t end = phi3.vocab().Find("<|end|>");
  ASSERT_NE(user, kNoToken);
  const std::vector<int32_t> ids = phi3.Encode("<|user|>\nHi<|end|>", false, true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), user);
  EXPECT_EQ(ids.back(), end);
  for (int32_t id : phi3.Encode("<|user|>\nHi<|end|>", false, false)) {
    EXPECT_NE(id, user);
    EXPECT_NE(id, end);
  }
}

TEST(TokenizerFixtures, Stories260K) {
  const Tokenizer tok = LoadTokenizer(testing::StoriesModel());
  EXPECT_EQ(tok.n_tokens(), 512);
  EXPECT_EQ(tok.vocab().pad_id, kNoToken);  // 0xFFFFFFFF in the file means none
  EXPECT_EQ(tok.Encode("Once upon a time", /*add_special=*/true, /*parse_special=*/false),
            (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok.Encode("Once upon a time", false, false), (std::vector<int32_t>{403, 407, 261, 378}));
  EXPECT_EQ(tok.Decode({1, 403, 407, 261, 378}), "Once upon a time");
  EXPECT_TRUE(tok.IsEog(2));
  // Byte fallback: characters outside the 512-token vocabulary become <0xNN> tokens.
  const std::vector<int32_t> ids = tok.Encode("ж", false, false);
  EXPECT_EQ(tok.Decode(ids), "ж");
  EXPECT_EQ(ids, (std::vector<int32_t>{410, 211, 185}));  // ▁ <0xD0> <0xB6>
  for (int32_t id : ids) EXPECT_NE(id, 0) << "unk used instead of byte fallback";
}

// Long prompts and very long words encode and decode back exactly.
TEST(TokenizerFixtures, LongPromptRoundTrips) {
  const Tokenizer spm = LoadTokenizer(testing::Fixture("tokenizer/ggml-vocab-llama-spm.gguf"));
  const Tokenizer bpe = LoadTokenizer(testing::Fixture("tokenizer/ggml-vocab-deepseek-llm.gguf"));
  std::string text;
  while (text.size() < 400000) text += "The quick brown fox jumps over the lazy dog 1234567. Ünïcödé ✓ 你好世界\n";
  std::string word(100000, 'a');  // one long word: a single merge queue
  for (const Tokenizer* t : {&spm, &bpe}) {
    // No timing assertion (speed belongs in benchmarks); a quadratic encoder would hit
    // the CTest timeout on these inputs.
    const std::vector<int32_t> ids = t->Encode(text, false, false);
    const std::vector<int32_t> ids2 = t->Encode(word, false, false);
    EXPECT_GT(ids.size(), 10000u);
    EXPECT_EQ(t->Decode(ids), text);
    EXPECT_EQ(t->Decode(ids2), word);
  }
}

}  // namespace
}  // namespace tierlm::tokenizer
