#include "tokenizer/spm_tokenizer.h"

#include <cstdio>
#include <queue>
#include <string>

#include "tokenizer/utf8.h"

namespace tierlm::tokenizer {
namespace {

struct Symbol {
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
  uint32_t start;  // byte offset in the text
  uint32_t len;    // bytes; 0 once merged into its left neighbour
};

struct Candidate {
  float score;
  int32_t left;
  int32_t right;
  uint32_t len;  // bytes of left + right when the candidate was made (stale check)
};

struct CandidateOrder {  // max-heap: higher score first, then the leftmost
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

}  // namespace

std::string EscapeSpmWhitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') {
      out.append("\xE2\x96\x81");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

SpmTokenizer::SpmTokenizer(const Vocab& vocab) : vocab_(&vocab) {
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    int32_t id = vocab.Find(hex);
    if (id == kNoToken) id = vocab.Find(std::string(1, static_cast<char>(b)));
    if (id == kNoToken) id = vocab.unk_id;
    byte_tokens_[b] = id;
  }
}

void SpmTokenizer::Encode(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t offs = 0; offs < text.size();) {
    const size_t len = std::min(text.size() - offs, Utf8LengthFromLeadByte(static_cast<uint8_t>(text[offs])));
    const int32_t idx = static_cast<int32_t>(symbols.size());
    symbols.push_back({idx - 1, offs + len < text.size() ? idx + 1 : -1, static_cast<uint32_t>(offs),
                       static_cast<uint32_t>(len)});
    offs += len;
  }

  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t len = symbols[left].len + symbols[right].len;
    const int32_t id = vocab_->Find(text.substr(symbols[left].start, len));
    if (id == kNoToken) return;
    queue.push({vocab_->tokens[id].score, left, right, len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    // Stale if either side has been merged away or has grown since.
    if (left.len == 0 || right.len == 0 || left.len + right.len != c.len) continue;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string_view piece = text.substr(s.start, s.len);
    const int32_t id = vocab_->Find(piece);
    if (id != kNoToken) {
      out->push_back(id);
      continue;
    }
    for (char ch : piece) {
      const int32_t b = byte_tokens_[static_cast<uint8_t>(ch)];
      if (b != kNoToken) out->push_back(b);
    }
  }
}

}  // namespace tierlm::tokenizer
