// UTF-8 helpers shared by the tokenizers and the detokenizer.
//
// Two decoders on purpose: `DecodeUtf8Lenient` mirrors what llama.cpp's tokenizer does
// (any lead byte with the right continuation bytes is accepted; a bad byte becomes
// U+FFFD and decoding resumes at the next byte), so token ids match its fixtures; the
// strict `Utf8SequenceStatus` is what the streaming detokenizer uses to decide whether
// bytes form a complete, valid character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tierlm::tokenizer {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the sequence a byte starts, judged by its high bits alone:
// 0xxxxxxx and 10xxxxxx -> 1, 110xxxxx -> 2, 1110xxxx -> 3, 11110xxx and above -> 4.
inline size_t Utf8LengthFromLeadByte(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Appends the UTF-8 encoding of `cpt` (REQUIRES: cpt <= 0x10FFFF).
void AppendUtf8(uint32_t cpt, std::string* out);
std::string EncodeUtf8(uint32_t cpt);

// Decodes `text` to codepoints the lenient way described above.
std::vector<uint32_t> DecodeUtf8Lenient(std::string_view text);

enum class Utf8Status {
  kComplete,    // the bytes start with one complete, valid sequence of `length` bytes
  kIncomplete,  // a valid prefix of a sequence: more bytes are needed
  kInvalid,     // the first byte cannot start a valid sequence given what follows
};
struct Utf8Check {
  Utf8Status status;
  size_t length;  // kComplete: bytes of the sequence; kInvalid: bytes to replace (>= 1)
};
// Strict check (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF) of
// the sequence at the start of `bytes`. REQUIRES: !bytes.empty().
Utf8Check CheckUtf8Sequence(std::string_view bytes);

}  // namespace tierlm::tokenizer
