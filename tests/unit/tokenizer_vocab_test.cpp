// Vocab loading from GGUF metadata (defaults and errors) and the two merge algorithms
// on tiny hand-made vocabularies whose expected tokens follow from the rules.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "format/byte_source.h"
#include "format/gguf_file.h"
#include "gguf_builder.h"
#include "tokenizer/tokenizer.h"

namespace tierlm::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

// Metadata for a vocab-only GGUF image, written key by key.
struct Meta {
  testing::GgufBytes kv;
  uint64_t n = 0;

  Meta& Str(const std::string& key, const std::string& v) {
    kv.KvStr(key, v);
    ++n;
    return *this;
  }
  Meta& U32(const std::string& key, uint32_t v) {
    kv.KvU32(key, v);
    ++n;
    return *this;
  }
  Meta& Bool(const std::string& key, bool v) {
    kv.Str(key).Pod<uint32_t>(7).Pod<uint8_t>(v ? 1 : 0);
    ++n;
    return *this;
  }
  Meta& Strings(const std::string& key, const std::vector<std::string>& v) {
    kv.Str(key).Pod<uint32_t>(9).Pod<uint32_t>(8).Pod<uint64_t>(v.size());
    for (const auto& s : v) kv.Str(s);
    ++n;
    return *this;
  }
  Meta& Floats(const std::string& key, const std::vector<float>& v) {
    kv.Str(key).Pod<uint32_t>(9).Pod<uint32_t>(6).Pod<uint64_t>(v.size());
    for (float f : v) kv.Pod<float>(f);
    ++n;
    return *this;
  }
  Meta& Ints(const std::string& key, const std::vector<int32_t>& v) {
    kv.Str(key).Pod<uint32_t>(9).Pod<uint32_t>(5).Pod<uint64_t>(v.size());
    for (int32_t x : v) kv.Pod<int32_t>(x);
    ++n;
    return *this;
  }

  Result<gguf::GgufFile> Parse() const {
    testing::GgufBytes b;
    b.Header(3, 0, n);
    b.bytes.insert(b.bytes.end(), kv.bytes.begin(), kv.bytes.end());
    b.AlignTo(32);
    bytes_ = b.bytes;
    MemoryByteSource src(bytes_.data(), bytes_.size());
    return gguf::GgufFile::Parse(src, "vocab.gguf");
  }
  mutable std::vector<uint8_t> bytes_;
};

Result<Vocab> LoadVocab(const Meta& m) {
  Result<gguf::GgufFile> f = m.Parse();
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  if (!f.ok()) return f.status();
  return Vocab::FromGguf(*f);
}

Tokenizer MustTokenizer(const Meta& m) {
  Result<gguf::GgufFile> f = m.Parse();
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  Result<Tokenizer> t = Tokenizer::FromGguf(*f);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  if (!t.ok()) std::abort();
  return std::move(t).value();
}

const std::string kSp = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// An SPM vocab: ids 0..2 special, then the given pieces (normal) and one byte token.
Meta SpmMeta(const std::vector<std::string>& pieces, const std::vector<float>& piece_scores) {
  std::vector<std::string> toks = {"<unk>", "<s>", "</s>", "<0x63>"};
  std::vector<float> scores = {0, 0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3, 6};
  for (size_t i = 0; i < pieces.size(); ++i) {
    toks.push_back(pieces[i]);
    scores.push_back(piece_scores[i]);
    types.push_back(1);
  }
  Meta m;
  m.Str("tokenizer.ggml.model", "llama").Strings("tokenizer.ggml.tokens", toks);
  m.Floats("tokenizer.ggml.scores", scores).Ints("tokenizer.ggml.token_type", types);
  return m;
}

TEST(TokenizerVocab, SpmDefaults) {
  Result<Vocab> v = LoadVocab(SpmMeta({kSp, "a"}, {-1, -2}));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->type, VocabType::kSpm);
  EXPECT_EQ(v->bos_id, 1);
  EXPECT_EQ(v->eos_id, 2);
  EXPECT_EQ(v->unk_id, 0);
  EXPECT_TRUE(v->add_bos);
  EXPECT_FALSE(v->add_eos);
  EXPECT_TRUE(v->add_space_prefix);
  EXPECT_EQ(v->Find("a"), 5);
  EXPECT_TRUE(v->IsEog(2));
}

TEST(TokenizerVocab, SpmMergesByHighestScore) {
  // " ab" -> symbols ▁ a b; candidates "▁a" and "ab": the higher score merges first.
  {
    Tokenizer t = MustTokenizer(SpmMeta({kSp, "a", "b", kSp + "a", "ab"}, {-1, -1, -1, -5, -2}));
    EXPECT_EQ(t.Encode("ab", false, false), (Ids{4, 8}));  // ▁, ab
  }
  {
    Tokenizer t = MustTokenizer(SpmMeta({kSp, "a", "b", kSp + "a", "ab"}, {-1, -1, -1, -2, -5}));
    EXPECT_EQ(t.Encode("ab", false, false), (Ids{7, 6}));  // ▁a, b
  }
  {
    // Equal scores: the leftmost pair wins.
    Tokenizer t = MustTokenizer(SpmMeta({kSp, "a", "b", kSp + "a", "ab"}, {-1, -1, -1, -3, -3}));
    EXPECT_EQ(t.Encode("ab", true, false), (Ids{1, 7, 6}));
  }
}

TEST(TokenizerVocab, SpmByteFallbackThenUnknown) {
  Tokenizer t = MustTokenizer(SpmMeta({kSp, "a"}, {-1, -1}));
  // 'c' has a <0x63> token; 'd' has none and becomes <unk>.
  EXPECT_EQ(t.Encode("acd", false, false), (Ids{4, 5, 3, 0}));
  EXPECT_EQ(t.TokenToPiece(3), "c");
  EXPECT_EQ(t.TokenToPiece(4), " ");
}

TEST(TokenizerVocab, AddSpacePrefixOff) {
  Meta m = SpmMeta({kSp, "a"}, {-1, -1});
  m.Bool("tokenizer.ggml.add_space_prefix", false).Bool("tokenizer.ggml.add_eos_token", true);
  Tokenizer t = MustTokenizer(m);
  EXPECT_EQ(t.Encode("a a", true, false), (Ids{1, 5, 4, 5, 2}));
  EXPECT_EQ(t.Decode(t.Encode("a a", true, false)), "a a");
}

// A byte-level BPE vocab over the letters a, b, c and space (Ġ).
Meta BpeMeta(const std::vector<std::string>& merges, const std::string& pre = "gpt-2") {
  Meta m;
  m.Str("tokenizer.ggml.model", "gpt2").Str("tokenizer.ggml.pre", pre);
  m.Strings("tokenizer.ggml.tokens", {"a", "b", "c", "\xC4\xA0", "ab", "bc", "abc", "\xC4\xA0" "a", "<|end|>"});
  m.Ints("tokenizer.ggml.token_type", {1, 1, 1, 1, 1, 1, 1, 1, 3});
  m.Strings("tokenizer.ggml.merges", merges);
  m.U32("tokenizer.ggml.eos_token_id", 8);
  return m;
}

TEST(TokenizerVocab, BpeMergesByLowestRank) {
  {
    Tokenizer t = MustTokenizer(BpeMeta({"a b", "ab c", "\xC4\xA0 a"}));
    EXPECT_EQ(t.Encode("abc", false, false), (Ids{6}));
    EXPECT_EQ(t.Encode("abc a", false, false), (Ids{6, 7}));
  }
  {
    // "b c" ranks first, and there is no "a bc" merge.
    Tokenizer t = MustTokenizer(BpeMeta({"b c", "a b", "ab c"}));
    EXPECT_EQ(t.Encode("abc", false, false), (Ids{0, 5}));
    EXPECT_EQ(t.Decode({0, 5}), "abc");
  }
  Tokenizer t = MustTokenizer(BpeMeta({"a b"}));
  EXPECT_FALSE(t.vocab().add_bos);
  EXPECT_TRUE(t.IsEog(8));
  EXPECT_EQ(t.Encode("ab<|end|>", true, true), (Ids{4, 8}));
}

TEST(TokenizerVocab, Llama3PreAddsBosAndIgnoresMerges) {
  Meta m = BpeMeta({"a b"}, "llama-bpe");
  m.U32("tokenizer.ggml.bos_token_id", 2);
  Tokenizer t = MustTokenizer(m);
  EXPECT_TRUE(t.vocab().add_bos);
  EXPECT_TRUE(t.vocab().ignore_merges);
  // "abc" is a token: taken whole although no merge leads to it.
  EXPECT_EQ(t.Encode("abc", true, false), (Ids{2, 6}));
}

void ExpectError(const Meta& m, StatusCode code, const std::string& key) {
  Result<Vocab> v = LoadVocab(m);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), code) << v.status().ToString();
  EXPECT_NE(v.status().message().find("vocab.gguf"), std::string::npos) << v.status().ToString();
  EXPECT_NE(v.status().message().find(key), std::string::npos) << v.status().ToString();
}

TEST(TokenizerVocab, Errors) {
  {
    Meta m;
    m.Str("tokenizer.ggml.model", "llama");
    ExpectError(m, StatusCode::kNotFound, "tokenizer.ggml.tokens");
  }
  {
    Meta m;
    m.Strings("tokenizer.ggml.tokens", {"a"});
    ExpectError(m, StatusCode::kNotFound, "tokenizer.ggml.model");
  }
  {
    Meta m;
    m.Str("tokenizer.ggml.model", "bert").Strings("tokenizer.ggml.tokens", {"a"});
    ExpectError(m, StatusCode::kUnsupported, "tokenizer.ggml.model");
  }
  {
    Meta m = SpmMeta({kSp}, {0});
    m.U32("tokenizer.ggml.eos_token_id", 99);
    ExpectError(m, StatusCode::kInvalidArgument, "tokenizer.ggml.eos_token_id");
  }
  {
    Meta m;
    m.Str("tokenizer.ggml.model", "llama").Strings("tokenizer.ggml.tokens", {"a", "b", "c"});
    m.Floats("tokenizer.ggml.scores", {0, 0});
    ExpectError(m, StatusCode::kCorruption, "tokenizer.ggml.scores");
  }
  {
    Meta m;
    m.Str("tokenizer.ggml.model", "gpt2").Str("tokenizer.ggml.pre", "gpt-2");
    m.Strings("tokenizer.ggml.tokens", {"a", "b"});
    ExpectError(m, StatusCode::kNotFound, "tokenizer.ggml.merges");
  }
  ExpectError(BpeMeta({"a b"}, "klingon"), StatusCode::kUnsupported, "tokenizer.ggml.pre");
  ExpectError(BpeMeta({"ab"}), StatusCode::kCorruption, "tokenizer.ggml.merges");
}

TEST(TokenizerVocab, NoneSentinelIds) {
  Meta m = SpmMeta({kSp}, {0});
  m.U32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
  Result<Vocab> v = LoadVocab(m);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->pad_id, kNoToken);
}

}  // namespace
}  // namespace tierlm::tokenizer
