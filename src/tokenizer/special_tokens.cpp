#include "tokenizer/special_tokens.h"

#include <cctype>

namespace tierlm::tokenizer {

std::vector<Fragment> PartitionSpecialTokens(const Vocab& vocab, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({kNoToken, 0, text.size()});
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };

  std::vector<Fragment> next;
  for (int32_t id : vocab.special_ids) {
    const TokenData& tok = vocab.tokens[id];
    if (!parse_special && (tok.attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string_view needle = tok.text;
    // Cheap pre-check: skip the rebuild when no raw fragment contains the token.
    bool found = false;
    for (const Fragment& f : frags) {
      if (!f.is_token() && text.substr(f.offset, f.length).find(needle) != std::string_view::npos) {
        found = true;
        break;
      }
    }
    if (!found) continue;

    next.clear();
    for (const Fragment& f : frags) {
      if (f.is_token()) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.offset;
      size_t end = f.offset + f.length;
      while (pos < end) {
        const size_t match = text.substr(0, end).find(needle, pos);
        if (match == std::string_view::npos) {
          next.push_back({kNoToken, pos, end - pos});
          break;
        }
        size_t left_end = match;
        if (tok.attr & kAttrLstrip) {
          while (left_end > pos && is_space(text[left_end - 1])) --left_end;
        }
        if (left_end > pos) next.push_back({kNoToken, pos, left_end - pos});
        next.push_back({id, 0, 0});
        pos = match + needle.size();
        if (tok.attr & kAttrRstrip) {
          while (pos < end && is_space(text[pos])) ++pos;
        }
      }
    }
    frags.swap(next);
  }
  return frags;
}

}  // namespace tierlm::tokenizer
