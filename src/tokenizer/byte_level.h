// GPT-2's byte-level alphabet: every byte value has a printable stand-in codepoint so
// that byte-level BPE vocabularies can store arbitrary bytes as text.
//
// Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves (as codepoints); the
// other 68 bytes map, in increasing order, to U+0100, U+0101, ... (space -> U+0120 'Ġ',
// '\n' -> U+010A 'Ċ').
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tierlm::tokenizer {

// The UTF-8 text of the stand-in for `byte`.
const std::string& ByteToUnicode(uint8_t byte);
// The byte a stand-in codepoint represents, or -1 if `cpt` is not in the alphabet.
int UnicodeToByte(uint32_t cpt);

// Maps every byte of `bytes` to its stand-in, appending to *out.
void AppendByteLevel(std::string_view bytes, std::string* out);
// Inverse: decodes stand-in text back to bytes. Codepoints outside the alphabet are
// copied through as UTF-8 (they cannot come from byte-level encoding).
std::string DecodeByteLevel(std::string_view text);

}  // namespace tierlm::tokenizer
