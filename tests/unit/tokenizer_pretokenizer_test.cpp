// Pre-tokenizer splits derived by hand from each pre-tokenizer's regex. The llama3 and
// qwen2 vocabularies are too big to ship, so their rules are checked here directly.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer/pretokenizer.h"

namespace tierlm::tokenizer {
namespace {

using Words = std::vector<std::string>;

Words Split(PreTokenizerKind kind, const std::string& text) { return PreTokenizer(kind).Split(text); }

// Llama 3 (tokenizer.json of Meta-Llama-3):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Alternatives are tried left to right at each position (leftmost-first), greedy.
TEST(TokenizerPreTokenizerLlama3, WordsAndSpaces) {
  const auto k = PreTokenizerKind::kLlama3;
  EXPECT_EQ(Split(k, "Hello world"), (Words{"Hello", " world"}));
  // A space before a letter run joins it; of a longer run the last space does.
  EXPECT_EQ(Split(k, "a   b"), (Words{"a", "  ", " b"}));
  // Trailing whitespace stays one piece (\s+(?!\S) at the end of the text).
  EXPECT_EQ(Split(k, "end   "), (Words{"end", "   "}));
  // Any single non-letter/number/CR/LF character prefixes a letter run.
  EXPECT_EQ(Split(k, "\tword"), (Words{"\tword"}));
  EXPECT_EQ(Split(k, "a.b"), (Words{"a", ".b"}));
}

TEST(TokenizerPreTokenizerLlama3, ContractionsAreCaseInsensitive) {
  const auto k = PreTokenizerKind::kLlama3;
  EXPECT_EQ(Split(k, "I'm here, they'LL go"), (Words{"I", "'m", " here", ",", " they", "'LL", " go"}));
  EXPECT_EQ(Split(k, "don't WE'VE"), (Words{"don", "'t", " WE", "'VE"}));
  EXPECT_EQ(Split(k, "'S"), (Words{"'S"}));
  // A quote not starting a contraction is punctuation.
  EXPECT_EQ(Split(k, "''''"), (Words{"''''"}));
}

TEST(TokenizerPreTokenizerLlama3, DigitsInGroupsOfUpToThree) {
  const auto k = PreTokenizerKind::kLlama3;
  EXPECT_EQ(Split(k, "12345678"), (Words{"123", "456", "78"}));
  EXPECT_EQ(Split(k, "a1234b"), (Words{"a", "123", "4", "b"}));
  // The space before a number is a piece of its own (it cannot prefix \p{N}).
  EXPECT_EQ(Split(k, "Year 2024!"), (Words{"Year", " ", "202", "4", "!"}));
  // \p{N} is Unicode: Arabic-Indic digits group too.
  EXPECT_EQ(Split(k, "\u0663\u0664\u0665\u0666"), (Words{"\u0663\u0664\u0665", "\u0666"}));
}

TEST(TokenizerPreTokenizerLlama3, PunctuationAndNewlines) {
  const auto k = PreTokenizerKind::kLlama3;
  EXPECT_EQ(Split(k, "Hello!!! ...world"), (Words{"Hello", "!!!", " ...", "world"}));
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*' takes the newlines after punctuation.
  EXPECT_EQ(Split(k, "Hi.\n\nBye"), (Words{"Hi", ".\n\n", "Bye"}));
  // \s*[\r\n]+ runs through the last newline of a whitespace run.
  EXPECT_EQ(Split(k, "a\n\nb"), (Words{"a", "\n\n", "b"}));
  EXPECT_EQ(Split(k, "a \n  b"), (Words{"a", " \n", " ", " b"}));
  EXPECT_EQ(Split(k, "x\r\ny"), (Words{"x", "\r\n", "y"}));
}

TEST(TokenizerPreTokenizerLlama3, NonLatinAndEmoji) {
  const auto k = PreTokenizerKind::kLlama3;
  EXPECT_EQ(Split(k, "Привет мир"), (Words{"Привет", " мир"}));
  // CJK ideographs are letters (Lo), so they join adjacent Latin letters.
  EXPECT_EQ(Split(k, "我想在apple工作1314151天"), (Words{"我想在apple工作", "131", "415", "1", "天"}));
  // Emoji are symbols (So): a space-prefixed run of non-letters, then newlines.
  EXPECT_EQ(Split(k, "hi \xF0\x9F\xA6\x99\xF0\x9F\xA6\x99!"), (Words{"hi", " \xF0\x9F\xA6\x99\xF0\x9F\xA6\x99!"}));
  EXPECT_EQ(Split(k, "ok \xF0\x9F\x91\x8D\n\nnext"), (Words{"ok", " \xF0\x9F\x91\x8D\n\n", "next"}));
  // Combining marks (Mn) are neither letters nor numbers.
  EXPECT_EQ(Split(k, "e\xCC\x81t\xC3\xA9"), (Words{"e", "\xCC\x81t\xC3\xA9"}));
}

// Qwen2 (tokenizer.json of Qwen2): the llama3 regex with \p{N} in place of \p{N}{1,3}.
TEST(TokenizerPreTokenizerQwen2, SingleDigits) {
  const auto k = PreTokenizerKind::kQwen2;
  EXPECT_EQ(Split(k, "12345"), (Words{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(Split(k, "Year 2024!"), (Words{"Year", " ", "2", "0", "2", "4", "!"}));
  EXPECT_EQ(Split(k, "v1.2"), (Words{"v", "1", ".", "2"}));
}

TEST(TokenizerPreTokenizerQwen2, SameRulesAsLlama3Otherwise) {
  const auto k = PreTokenizerKind::kQwen2;
  EXPECT_EQ(Split(k, "I'M here, they'll go"), (Words{"I", "'M", " here", ",", " they", "'ll", " go"}));
  EXPECT_EQ(Split(k, "a   b\n\n  c  "), (Words{"a", "  ", " b", "\n\n", " ", " c", "  "}));
  EXPECT_EQ(Split(k, "<|im_start|>user"), (Words{"<|", "im", "_start", "|>", "user"}));
  EXPECT_EQ(Split(k, "你好，世界！"), (Words{"你好", "，世界", "！"}));
  EXPECT_EQ(Split(k, "x \xF0\x9F\x98\x81\n"), (Words{"x", " \xF0\x9F\x98\x81\n"}));
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
TEST(TokenizerPreTokenizerGpt2, Rules) {
  const auto k = PreTokenizerKind::kGpt2;
  EXPECT_EQ(Split(k, "Hello  world\n"), (Words{"Hello", " ", " world", "\n"}));
  // Case-sensitive contractions; numbers of any length.
  EXPECT_EQ(Split(k, "it's IT'S 12345"), (Words{"it", "'s", " IT", "'", "S", " 12345"}));
  // A tab does not prefix a word (only ' ' does).
  EXPECT_EQ(Split(k, "\tword"), (Words{"\t", "word"}));
  EXPECT_EQ(Split(k, "a.b"), (Words{"a", ".", "b"}));
}

// Starcoder: \p{N} first, then the GPT-2 regex on each piece.
TEST(TokenizerPreTokenizerStarcoder, DigitsSplitFirst) {
  EXPECT_EQ(Split(PreTokenizerKind::kStarcoder, "x 123"), (Words{"x", " ", "1", "2", "3"}));
}

// deepseek-llm: [\r\n], \s?[A-Za-z...]+, \s?[!-/:-~...]+, \s+$, [一-龥ࠀ-一가-퟿]+, \p{N}+
TEST(TokenizerPreTokenizerDeepseekLlm, Stages) {
  const auto k = PreTokenizerKind::kDeepseekLlm;
  EXPECT_EQ(Split(k, "Hello\nworld 123"), (Words{"Hello", "\n", "world", " ", "123"}));
  EXPECT_EQ(Split(k, "a, b  "), (Words{"a", ",", " b", "  "}));
  EXPECT_EQ(Split(k, "我想在apple"), (Words{"我想在", "apple"}));
}

// deepseek-coder: [\r\n], \s?\p{L}+, \s?\p{P}+, [一-龥ࠀ-一가-퟿]+, \p{N}
TEST(TokenizerPreTokenizerDeepseekCoder, Stages) {
  // '=' is a symbol (Sm), not \p{P}: " = " stays a gap until \p{N} splits off the digits.
  EXPECT_EQ(Split(PreTokenizerKind::kDeepseekCoder, "int x = 42;\n"),
            (Words{"int", " x", " = ", "4", "2", ";", "\n"}));
}

TEST(TokenizerPreTokenizer, NamesMapToKinds) {
  EXPECT_EQ(*PreTokenizerKindFromName("llama-bpe"), PreTokenizerKind::kLlama3);
  EXPECT_EQ(*PreTokenizerKindFromName("qwen2"), PreTokenizerKind::kQwen2);
  EXPECT_EQ(*PreTokenizerKindFromName("gpt-2"), PreTokenizerKind::kGpt2);
  EXPECT_EQ(*PreTokenizerKindFromName(""), PreTokenizerKind::kDefault);
  Result<PreTokenizerKind> bad = PreTokenizerKindFromName("no-such-pre");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(bad.status().message().find("no-such-pre"), std::string::npos);
}

// Every kind partitions its input: the words concatenate back to the text, none empty.
TEST(TokenizerPreTokenizer, WordsPartitionTheText) {
  const char* alphabet[] = {"a", "Z", " ", "  ", "\n", "\r", "\t", "1", "9", "'", "s", "LL", ".", "!",
                            "é", "я", "我", "\xF0\x9F\xA6\x99", "\xE3\x80\x80", "\xC2\xA0", "\xD9\xA3"};
  std::mt19937 rng(7);
  for (auto kind : {PreTokenizerKind::kDefault, PreTokenizerKind::kGpt2, PreTokenizerKind::kLlama3,
                    PreTokenizerKind::kQwen2, PreTokenizerKind::kDeepseekLlm, PreTokenizerKind::kDeepseekCoder,
                    PreTokenizerKind::kStarcoder}) {
    for (int trial = 0; trial < 300; ++trial) {
      std::string text;
      const int n = rng() % 30;
      for (int i = 0; i < n; ++i) text += alphabet[rng() % std::size(alphabet)];
      std::string joined;
      for (const std::string& w : Split(kind, text)) {
        EXPECT_FALSE(w.empty());
        joined += w;
      }
      ASSERT_EQ(joined, text) << PreTokenizerKindName(kind);
    }
  }
}

TEST(TokenizerPreTokenizer, InvalidUtf8BecomesReplacementChar) {
  EXPECT_EQ(Split(PreTokenizerKind::kGpt2, "a\xFF"), (Words{"a", "\xEF\xBF\xBD"}));
}

}  // namespace
}  // namespace tierlm::tokenizer
