// Streaming token -> text conversion that never splits a UTF-8 character.
//
// A byte-level or byte-fallback token may carry part of a character (an emoji is often
// 3-4 tokens). Push() appends a token's bytes and returns only complete, valid UTF-8;
// a trailing partial sequence is held back until the bytes that complete it arrive.
// Bytes that can never form a valid character (a stray continuation byte, an overlong
// form, a sequence cut short by a different character) are emitted as U+FFFD, one per
// maximal invalid subpart; Flush() returns what is held back, a partial sequence at
// the end becoming U+FFFD.
//
// With Options::strip_leading_space (default: the vocabulary's add_space_prefix, i.e.
// SentencePiece models) one leading space is removed from the first piece of a
// non-control token, undoing the space Encode prepends. So for SPM and BPE vocabularies
// Decode(Encode(s, add_special=false, parse_special=false)) == s for valid UTF-8 s.
//
// Thread safety: not thread-safe; one Detokenizer per output stream. The Tokenizer
// must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace tierlm::tokenizer {

class Detokenizer {
 public:
  struct Options {
    // Render control/unknown tokens (BOS, <|im_end|>, ...) as their text. Default: off.
    bool render_special = false;
    // Remove one leading space of the first text piece. Default: vocab add_space_prefix.
    std::optional<bool> strip_leading_space;
  };

  explicit Detokenizer(const Tokenizer& tokenizer) : Detokenizer(tokenizer, Options{}) {}
  Detokenizer(const Tokenizer& tokenizer, Options options);

  // Adds token `id`; returns the text completed by it (possibly empty).
  std::string Push(int32_t id);
  // Adds raw bytes as if they were a token's piece (no leading-space handling).
  std::string PushBytes(std::string_view bytes);
  // Returns everything held back (an incomplete sequence as U+FFFD) and resets the
  // UTF-8 state; the leading-space state is kept (Reset() clears it).
  std::string Flush();
  // Back to the initial state (drops held-back bytes).
  void Reset();

  // Bytes currently held back (a valid prefix of a multi-byte sequence).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool render_special_;
  bool strip_leading_space_;
  bool seen_text_ = false;  // a text piece has been emitted (no more stripping)
  std::string pending_;
};

}  // namespace tierlm::tokenizer
