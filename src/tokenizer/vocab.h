// The vocabulary of a model, as stored in GGUF metadata under tokenizer.*.
//
// Vocab is plain data: token texts, scores and types, merges, the special token ids and
// the flags that steer encoding. It is filled by `FromGguf` with llama.cpp's defaults,
// so a tokenizer built on it (tokenizer.h) matches llama.cpp's token ids.
//
// Keys read (all under `tokenizer.`):
//   ggml.model        "llama" -> kSpm (SentencePiece-style, merges by score, byte fallback),
//                     "gpt2"  -> kBpe (byte-level BPE with ranked merges); others Unsupported
//   ggml.pre          pre-tokenizer name for kBpe (pretokenizer.h); ignored for kSpm
//   ggml.tokens       required; ggml.scores, ggml.token_type optional (same length)
//   ggml.merges       required for kBpe: "left right", rank = index
//   ggml.{bos,eos,unknown,padding,seperator,cls,mask,eot,eom}_token_id,
//   ggml.fim_{pre,suf,mid,pad,rep,sep}_token_id
//                     optional; 0xFFFFFFFF or -1 means none; another id >= n_tokens is an
//                     error. Defaults: kSpm bos 1, eos 2, unk 0; kBpe bos 11, eos 11
//                     (llama.cpp's). An id past n_tokens that is only a default is dropped.
//   ggml.add_bos_token, ggml.add_eos_token, ggml.add_space_prefix
//                     optional; defaults: kSpm add_bos, add_space_prefix; kBpe adds BOS
//                     only for the llama3 family of pre-tokenizers
//   chat_template     optional
// Errors name the file (GgufFile::name()) and the key at fault.
//
// Thread safety: immutable after FromGguf; share freely between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "format/gguf_file.h"
#include "tokenizer/pretokenizer.h"

namespace tierlm::tokenizer {

inline constexpr int32_t kNoToken = -1;

enum class VocabType {
  kSpm,  // tokenizer.ggml.model = "llama"
  kBpe,  // tokenizer.ggml.model = "gpt2"
};

// tokenizer.ggml.token_type values (SentencePiece's piece types).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Attributes derived from the type, plus the strip flags some models set.
enum TokenAttr : uint32_t {
  kAttrNormal = 1u << 0,
  kAttrUnknown = 1u << 1,
  kAttrControl = 1u << 2,
  kAttrUserDefined = 1u << 3,
  kAttrUnused = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 6,  // when parsed from text, eats whitespace on its left
  kAttrRstrip = 1u << 7,  // ... and on its right
};

struct TokenData {
  std::string text;  // as stored: SPM uses U+2581 for space, BPE the GPT-2 byte alphabet
  float score = 0.0f;
  TokenType type = TokenType::kNormal;
  uint32_t attr = kAttrNormal;
};

// Hash map from token text to id that can be probed with a string_view.
struct TextHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TextToIdMap = std::unordered_map<std::string, int32_t, TextHash, std::equal_to<>>;

struct Vocab {
  VocabType type = VocabType::kSpm;
  std::string model;        // tokenizer.ggml.model
  std::string pre;          // tokenizer.ggml.pre ("" if absent)
  PreTokenizerKind pre_kind = PreTokenizerKind::kDefault;  // kBpe only

  std::vector<TokenData> tokens;  // [n_tokens], indexed by id
  TextToIdMap text_to_id;         // text -> id; for duplicate texts the last id wins
  std::vector<std::string> merges;  // kBpe: "left right", in rank order

  int32_t bos_id = kNoToken;
  int32_t eos_id = kNoToken;
  int32_t unk_id = kNoToken;
  int32_t pad_id = kNoToken;
  int32_t sep_id = kNoToken;
  int32_t cls_id = kNoToken;
  int32_t mask_id = kNoToken;
  int32_t eot_id = kNoToken;  // from metadata, else found by text (<|eot_id|>, <|im_end|>, ...)
  int32_t eom_id = kNoToken;
  int32_t fim_pre_id = kNoToken, fim_suf_id = kNoToken, fim_mid_id = kNoToken;
  int32_t fim_pad_id = kNoToken, fim_rep_id = kNoToken, fim_sep_id = kNoToken;

  bool add_bos = false;           // Encode(add_special=true) prepends bos_id
  bool add_eos = false;           // ... and appends eos_id
  bool add_space_prefix = false;  // kSpm: text starts with a space ("▁")
  bool ignore_merges = false;     // kBpe llama3: a word that is a token is taken whole

  std::string chat_template;  // tokenizer.chat_template, "" if absent

  // Tokens that end generation: eos, eot, eom, fim pad/rep/sep, and tokens whose text
  // is one of <|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, ...
  std::vector<int32_t> eog_ids;  // sorted
  // Tokens recognised inside text by Encode: control, user-defined and unknown tokens,
  // longest text first (user-defined ones are matched even when parse_special is off).
  std::vector<int32_t> special_ids;

  // REQUIRES for FromGguf's result: tokens.size() fits int32_t; every id above is
  // kNoToken or < n_tokens().
  static Result<Vocab> FromGguf(const gguf::GgufFile& file);

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  bool IsValid(int32_t id) const { return id >= 0 && id < n_tokens(); }
  // The id of the token whose text is `text`, or kNoToken.
  int32_t Find(std::string_view text) const {
    auto it = text_to_id.find(text);
    return it == text_to_id.end() ? kNoToken : it->second;
  }
  uint32_t Attr(int32_t id) const { return IsValid(id) ? tokens[id].attr : 0; }
  bool IsEog(int32_t id) const;
};

}  // namespace tierlm::tokenizer
