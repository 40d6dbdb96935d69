// Byte-level BPE over a `gpt2` vocabulary (ranked merges), applied to one pre-token word.
//
// Algorithm (GPT-2's, and llama.cpp's llm_tokenizer_bpe):
//   1. Map the word's bytes to the byte-level alphabet (byte_level.h); one symbol per byte.
//      With `ignore_merges` (llama3) a word that is a token as a whole is taken directly.
//   2. Repeatedly merge the adjacent pair with the lowest merge rank (ties: the leftmost).
//   3. Each final symbol is its token; a symbol that is not a token (possible only with
//      inconsistent merges) falls back to single-byte tokens of its text, as llama.cpp.
//
// Merges are precompiled into a hash map from (left piece id, right piece id) to
// (rank, merged piece id), where piece ids are token ids or, for merge operands that
// are not tokens, extra ids; so merging does no string work. O(n log n) per word.
//
// Thread safety: const methods may run concurrently; the Vocab must outlive this object.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "tokenizer/vocab.h"

namespace tierlm::tokenizer {

class BpeTokenizer {
 public:
  // REQUIRES: vocab.type == kBpe. InvalidArgument (naming the merge) if a merge is not
  // "left right".
  static Result<BpeTokenizer> Create(const Vocab& vocab);

  // Appends the tokens of one pre-tokenized word (raw UTF-8 bytes) to *out.
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

 private:
  explicit BpeTokenizer(const Vocab& vocab) : vocab_(&vocab) {}

  struct Merge {
    int32_t rank;
    int32_t result;  // piece id of left + right
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  int32_t PieceId(std::string_view text) const;  // token id, extra id, or kNoToken
  int32_t InternPiece(const std::string& text);
  std::string_view PieceText(int32_t id) const;

  const Vocab* vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  TextToIdMap extra_ids_;                  // merge operands/results that are not tokens
  std::vector<std::string> extra_texts_;   // [id - n_tokens]
  std::array<int32_t, 256> byte_piece_{};  // piece id of each byte's stand-in
};

}  // namespace tierlm::tokenizer
