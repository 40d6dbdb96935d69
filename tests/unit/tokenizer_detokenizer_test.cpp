// The streaming detokenizer: partial UTF-8 is held back, invalid bytes become U+FFFD.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "format/gguf_file.h"
#include "test_paths.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace tierlm::tokenizer {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

Tokenizer Load(const std::filesystem::path& path) {
  Result<gguf::GgufFile> f = gguf::GgufFile::Open(path.string());
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  if (!f.ok()) std::abort();
  Result<Tokenizer> t = Tokenizer::FromGguf(*f);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  if (!t.ok()) std::abort();
  return std::move(t).value();
}

bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const Utf8Check c = CheckUtf8Sequence(std::string_view(s).substr(i));
    if (c.status != Utf8Status::kComplete) return false;
    i += c.length;
  }
  return true;
}

TEST(TokenizerDetokenizer, HoldsBackPartialSequences) {
  const Tokenizer tok = Load(testing::StoriesModel());
  Detokenizer d(tok);
  EXPECT_EQ(d.PushBytes("\xE2"), "");  // € = E2 82 AC
  EXPECT_EQ(d.pending_bytes(), 1u);
  EXPECT_EQ(d.PushBytes("\x82"), "");
  EXPECT_EQ(d.PushBytes("\xAC" "ab\xF0\x9F"), "\xE2\x82\xAC" "ab");
  EXPECT_EQ(d.PushBytes("\xA6\x99"), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(d.pending_bytes(), 0u);
  EXPECT_EQ(d.Flush(), "");
}

TEST(TokenizerDetokenizer, InvalidBytesBecomeReplacementCharacters) {
  const Tokenizer tok = Load(testing::StoriesModel());
  Detokenizer d(tok);
  EXPECT_EQ(d.PushBytes("\x80x"), kFffd + "x");              // stray continuation byte
  EXPECT_EQ(d.PushBytes("\xE2\x82" "A"), kFffd + "A");       // cut short: one U+FFFD
  EXPECT_EQ(d.PushBytes("\xC0\xAF"), kFffd + kFffd);         // overlong form
  EXPECT_EQ(d.PushBytes("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // UTF-16 surrogate
  EXPECT_EQ(d.PushBytes("\xF4\x90"), kFffd + kFffd);         // above U+10FFFF
  EXPECT_EQ(d.PushBytes("\xF0\x9F\xA6"), "");                // incomplete at the end ...
  EXPECT_EQ(d.Flush(), kFffd);                               // ... flushed as U+FFFD
  EXPECT_EQ(d.Flush(), "");
}

TEST(TokenizerDetokenizer, ByteFallbackTokensJoinIntoCharacters) {
  const Tokenizer tok = Load(testing::StoriesModel());
  const std::vector<int32_t> ids = tok.Encode("жé!", /*add_special=*/true, false);
  // BOS, ▁, <0xD0>, <0xB6>, é, ! ("ж" is not in the 512-token vocabulary)
  Detokenizer d(tok);
  std::string all;
  bool saw_partial = false;
  for (int32_t id : ids) {
    const std::string out = d.Push(id);
    EXPECT_TRUE(IsValidUtf8(out));
    if (d.pending_bytes() > 0) saw_partial = true;
    all += out;
  }
  all += d.Flush();
  EXPECT_TRUE(saw_partial) << "expected 'ж' to arrive as two byte tokens";
  EXPECT_EQ(all, "жé!");
}

TEST(TokenizerDetokenizer, BpeEmojiStreamsWholeCharacters) {
  const Tokenizer tok = Load(testing::Fixture("tokenizer/ggml-vocab-gpt-2.gguf"));
  const std::string text = "llama \xF0\x9F\xA6\x99\xF0\x9F\xA6\x99 ok \xE2\x9C\x85 \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F";
  const std::vector<int32_t> ids = tok.Encode(text, false, false);
  Detokenizer d(tok);
  std::string all;
  size_t max_pending = 0;
  for (int32_t id : ids) {
    const std::string out = d.Push(id);
    EXPECT_TRUE(IsValidUtf8(out)) << "token " << id;
    max_pending = std::max(max_pending, d.pending_bytes());
    all += out;
  }
  all += d.Flush();
  EXPECT_GT(max_pending, 0u);
  EXPECT_EQ(all, text);
}

TEST(TokenizerDetokenizer, LeadingSpaceAndSpecialTokens) {
  const Tokenizer tok = Load(testing::StoriesModel());
  {
    Detokenizer d(tok);
    EXPECT_EQ(d.Push(1), "");  // BOS renders as nothing by default
    EXPECT_EQ(d.Push(403), "Once");  // "▁Once": the prefix space is stripped once
    EXPECT_EQ(d.Push(407), " upon");
  }
  {
    Detokenizer::Options o;
    o.render_special = true;
    o.strip_leading_space = false;
    Detokenizer d(tok, o);
    EXPECT_EQ(d.Push(1), "<s>");
    EXPECT_EQ(d.Push(403), " Once");
  }
  EXPECT_EQ(tok.TokenToPiece(403), " Once");
  EXPECT_EQ(tok.TokenToPiece(-1), "");
  EXPECT_EQ(tok.TokenToPiece(100000), "");
}

}  // namespace
}  // namespace tierlm::tokenizer
