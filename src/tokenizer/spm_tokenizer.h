// SentencePiece-style BPE over a `llama` vocabulary (merge by score, byte fallback).
//
// Algorithm (as SentencePiece's BPE model and llama.cpp's llm_tokenizer_spm):
//   1. One symbol per UTF-8 character of the text (spaces already replaced by U+2581).
//   2. Every adjacent pair whose concatenation is a token is a candidate, keyed by that
//      token's score; repeatedly merge the candidate with the highest score (ties: the
//      leftmost), then add the candidates the merged symbol forms with its neighbours.
//   3. Each final symbol is its token, or, if its text is not a token, one <0xNN> token
//      per byte (falling back to a token that is the byte itself, then to unk).
// O(n log n) in the text length: a binary heap of candidates, stale entries skipped.
//
// Thread safety: const methods may run concurrently; the Vocab must outlive this object.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tierlm::tokenizer {

class SpmTokenizer {
 public:
  // REQUIRES: vocab.type == kSpm.
  explicit SpmTokenizer(const Vocab& vocab);

  // Appends the tokens of `text` (already escaped: ' ' -> U+2581, prefix added) to *out.
  void Encode(std::string_view text, std::vector<int32_t>* out) const;

  // The token of one raw byte (<0xNN>, else the byte as text, else unk; kNoToken if none).
  int32_t ByteToken(uint8_t byte) const { return byte_tokens_[byte]; }

 private:
  const Vocab* vocab_;
  std::array<int32_t, 256> byte_tokens_;
};

// Replaces every ' ' with U+2581 ("▁"), SentencePiece's visible space.
std::string EscapeSpmWhitespace(std::string_view text);

}  // namespace tierlm::tokenizer
