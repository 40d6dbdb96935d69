// Pre-tokenizers of byte-level BPE vocabularies: split text into words before merging.
//
// Each kind is the sequence of regexes llama.cpp runs for that `tokenizer.ggml.pre`
// name. Regex k is applied to every piece produced by regexes 0..k-1; both the matches
// and the text between matches become pieces (llama.cpp's `unicode_regex_split`). The
// regexes are implemented by hand (no std::regex): each stage is a matcher that says how
// many codepoints match at a position, with the regex's leftmost-first alternation and
// greedy quantifiers reproduced exactly. `\s` is the Unicode White_Space property and
// `\p{..}` the general category (unicode_tables.h). The regex of each stage is quoted in
// pretokenizer.cpp next to its matcher.
//
// Thread safety: a PreTokenizer is immutable after construction; Split is const.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tierlm::tokenizer {

enum class PreTokenizerKind {
  kDefault,        // llama.cpp's fallback for BPE ("default")
  kGpt2,           // "gpt-2", "phi-2", "mpt", "olmo", ...
  kLlama3,         // "llama3", "llama-bpe", "llama-v3", "falcon3", ...: digits in groups of 1-3
  kQwen2,          // "qwen2", "stablelm2", "deepseek-r1-qwen", ...: the llama3 regex, single digits
  kDeepseekLlm,    // "deepseek-llm"
  kDeepseekCoder,  // "deepseek-coder"
  kStarcoder,      // "starcoder", "refact", "command-r", "smollm", ...
};

// Maps a `tokenizer.ggml.pre` value to its kind; an empty name means kDefault.
// Unsupported (naming the value) for names tierlm does not implement.
Result<PreTokenizerKind> PreTokenizerKindFromName(std::string_view name);
const char* PreTokenizerKindName(PreTokenizerKind kind);

class PreTokenizer {
 public:
  explicit PreTokenizer(PreTokenizerKind kind) : kind_(kind) {}
  PreTokenizerKind kind() const { return kind_; }

  // Splits `text` into words, in order. Their concatenation is `text`, except that bytes
  // that are not valid UTF-8 come back as U+FFFD (as in llama.cpp). No empty words.
  std::vector<std::string> Split(std::string_view text) const;

  // The same split as codepoint lengths of the words of `cpts`.
  std::vector<size_t> SplitCodepoints(const std::vector<uint32_t>& cpts) const;

 private:
  PreTokenizerKind kind_;
};

}  // namespace tierlm::tokenizer
