#include "tokenizer/bpe_tokenizer.h"

#include <queue>

#include "tokenizer/byte_level.h"

namespace tierlm::tokenizer {
namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  int32_t piece;   // piece id, kNoToken if the text is not a known piece
  uint32_t start;  // first byte of the word it covers
  uint32_t len;    // bytes of the word; 0 once merged into its left neighbour
};

struct Candidate {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t result;
  uint32_t len;  // bytes of left + right when made (stale check)
};

struct CandidateOrder {  // min-heap on rank, then the leftmost
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left > b.left;
  }
};

}  // namespace

int32_t BpeTokenizer::PieceId(std::string_view text) const {
  const int32_t id = vocab_->Find(text);
  if (id != kNoToken) return id;
  auto it = extra_ids_.find(text);
  return it == extra_ids_.end() ? kNoToken : it->second;
}

int32_t BpeTokenizer::InternPiece(const std::string& text) {
  const int32_t id = PieceId(text);
  if (id != kNoToken) return id;
  const int32_t new_id = vocab_->n_tokens() + static_cast<int32_t>(extra_texts_.size());
  extra_texts_.push_back(text);
  extra_ids_.emplace(text, new_id);
  return new_id;
}

std::string_view BpeTokenizer::PieceText(int32_t id) const {
  return id < vocab_->n_tokens() ? std::string_view(vocab_->tokens[id].text)
                                 : std::string_view(extra_texts_[id - vocab_->n_tokens()]);
}

Result<BpeTokenizer> BpeTokenizer::Create(const Vocab& vocab) {
  BpeTokenizer t(vocab);
  t.merges_.reserve(vocab.merges.size());
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string& m = vocab.merges[rank];
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos) {
      return Status::InvalidArgument("tokenizer.ggml.merges[" + std::to_string(rank) + "] = '" + m +
                                     "' is not 'left right'");
    }
    const std::string left = m.substr(0, sp);
    const std::string right = m.substr(sp + 1);
    const int32_t l = t.InternPiece(left);
    const int32_t r = t.InternPiece(right);
    const int32_t result = t.InternPiece(left + right);
    // The first (lowest-ranked) occurrence of a pair wins, as in a rank lookup table.
    t.merges_.emplace(PairKey(l, r), Merge{static_cast<int32_t>(rank), result});
  }
  for (int b = 0; b < 256; ++b) t.byte_piece_[b] = t.PieceId(ByteToUnicode(static_cast<uint8_t>(b)));
  return t;
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (vocab_->ignore_merges) {
    std::string mapped;
    AppendByteLevel(word, &mapped);
    const int32_t id = vocab_->Find(mapped);
    if (id != kNoToken) {
      out->push_back(id);
      return;
    }
  }

  std::vector<Symbol> symbols(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    const int32_t idx = static_cast<int32_t>(i);
    symbols[i] = {idx - 1, i + 1 < word.size() ? idx + 1 : -1, byte_piece_[static_cast<uint8_t>(word[i])],
                  static_cast<uint32_t>(i), 1};
  }

  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t lp = symbols[left].piece, rp = symbols[right].piece;
    if (lp == kNoToken || rp == kNoToken) return;
    auto it = merges_.find(PairKey(lp, rp));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, it->second.result, symbols[left].len + symbols[right].len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.len == 0 || right.len == 0 || left.len + right.len != c.len) continue;
    left.len += right.len;
    left.piece = c.result;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.piece != kNoToken && s.piece < vocab_->n_tokens()) {
      out->push_back(s.piece);
      continue;
    }
    // Not a token: llama.cpp emits the tokens of the single bytes of its stand-in text.
    std::string mapped;
    if (s.piece != kNoToken) {
      mapped = std::string(PieceText(s.piece));
    } else {
      AppendByteLevel(word.substr(s.start, s.len), &mapped);
    }
    for (char ch : mapped) {
      const int32_t id = vocab_->Find(std::string_view(&ch, 1));
      if (id != kNoToken) out->push_back(id);
    }
  }
}

}  // namespace tierlm::tokenizer
