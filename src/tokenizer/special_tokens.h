// Cutting special tokens out of text before tokenization (llama.cpp's
// tokenizer_st_partition).
//
// The text becomes a sequence of fragments, each either raw text or one special token.
// Candidates are Vocab::special_ids, longest text first: each candidate in turn is
// searched in every raw fragment left so far, so a longer token wins over a shorter one
// that overlaps it. Control and unknown tokens are only candidates when parse_special is
// set; user-defined tokens always are (as in Hugging Face tokenizers' added tokens).
// A token with kAttrLstrip / kAttrRstrip drops the whitespace on that side of it.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tierlm::tokenizer {

struct Fragment {
  int32_t token = kNoToken;  // kNoToken: raw text
  size_t offset = 0;         // raw text: byte range in the original text
  size_t length = 0;
  bool is_token() const { return token != kNoToken; }
};

// REQUIRES: every id in vocab.special_ids is valid. Raw fragments are non-empty.
std::vector<Fragment> PartitionSpecialTokens(const Vocab& vocab, std::string_view text, bool parse_special);

}  // namespace tierlm::tokenizer
