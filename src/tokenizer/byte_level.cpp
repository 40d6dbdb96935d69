#include "tokenizer/byte_level.h"

#include <array>
#include <vector>

#include "tokenizer/utf8.h"

namespace tierlm::tokenizer {
namespace {

struct Tables {
  std::array<uint32_t, 256> byte_to_cpt;
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 512> cpt_to_byte;  // every stand-in is below U+0200
};

const Tables& GetTables() {
  static const Tables t = [] {
    Tables t;
    t.cpt_to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cpt = self ? static_cast<uint32_t>(b) : next++;
      t.byte_to_cpt[b] = cpt;
      t.byte_to_utf8[b] = EncodeUtf8(cpt);
      t.cpt_to_byte[cpt] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return t;
}

}  // namespace

const std::string& ByteToUnicode(uint8_t byte) { return GetTables().byte_to_utf8[byte]; }

int UnicodeToByte(uint32_t cpt) { return cpt < 512 ? GetTables().cpt_to_byte[cpt] : -1; }

void AppendByteLevel(std::string_view bytes, std::string* out) {
  const Tables& t = GetTables();
  for (char c : bytes) out->append(t.byte_to_utf8[static_cast<uint8_t>(c)]);
}

std::string DecodeByteLevel(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (uint32_t cpt : DecodeUtf8Lenient(text)) {
    const int b = UnicodeToByte(cpt);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      AppendUtf8(cpt, &out);
    }
  }
  return out;
}

}  // namespace tierlm::tokenizer
