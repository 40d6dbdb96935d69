// Text <-> token ids for a model's vocabulary; matches llama.cpp's llama_tokenize.
//
//   TIERLM_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromGguf(file));
//   std::vector<int32_t> ids = tok.Encode("Hello", /*add_special=*/true, /*parse_special=*/false);
//   Detokenizer out(tok);  for (id : generated) std::cout << out.Push(id);  ... out.Flush();
//
// Encode runs in three steps:
//   1. Special tokens are cut out of the text (special_tokens.h): user-defined tokens
//      always, control tokens (<|im_start|>, </s>, ...) only when parse_special is set.
//   2. Each remaining text fragment is tokenized by the vocabulary's algorithm:
//      kSpm: a space is prepended when add_space_prefix is set and the fragment starts
//            the text or follows a special token; spaces become U+2581; spm_tokenizer.h.
//      kBpe: the pre-tokenizer splits it into words; each word goes through
//            bpe_tokenizer.h.
//   3. With add_special, BOS/EOS are added as the vocabulary says (add_bos/add_eos).
//
// Thread safety: immutable after construction; all methods are const and may run
// concurrently. Cheap to move; copies share the vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "format/gguf_file.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/vocab.h"

namespace tierlm::tokenizer {

class Tokenizer {
 public:
  static Result<Tokenizer> FromGguf(const gguf::GgufFile& file);
  static Result<Tokenizer> FromVocab(Vocab vocab);

  const Vocab& vocab() const { return *vocab_; }
  int32_t n_tokens() const { return vocab_->n_tokens(); }

  // Token ids of `text`. add_special: add BOS/EOS per the vocabulary. parse_special:
  // recognise control tokens written in the text (e.g. "<|im_start|>"); when false they
  // are tokenized as plain text. Invalid UTF-8 is tolerated (kSpm: byte fallback;
  // kBpe: each bad byte is encoded as U+FFFD, as llama.cpp).
  std::vector<int32_t> Encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes token `id` stands for: kSpm: U+2581 -> ' ', <0xNN> -> the byte; kBpe: the
  // byte-level alphabet decoded to bytes. Control and unknown tokens give their text
  // when render_special is set, else "". User-defined tokens give their text. An id
  // out of range gives "". A piece may be part of a UTF-8 character (see Detokenizer).
  std::string TokenToPiece(int32_t id, bool render_special = true) const;

  // True for tokens that end generation (EOS, EOT, <|im_end|>, <|eot_id|>, ...).
  bool IsEog(int32_t id) const { return vocab_->IsEog(id); }

  // All pieces of `ids` joined, with the Detokenizer's defaults (see detokenizer.h).
  std::string Decode(const std::vector<int32_t>& ids, bool render_special = false) const;

 private:
  Tokenizer() = default;
  void EncodeText(std::string_view text, bool after_special, std::vector<int32_t>* out) const;

  std::shared_ptr<const Vocab> vocab_;
  std::shared_ptr<const SpmTokenizer> spm_;  // kSpm
  std::shared_ptr<const BpeTokenizer> bpe_;  // kBpe
  std::optional<PreTokenizer> pre_;          // kBpe
};

}  // namespace tierlm::tokenizer
