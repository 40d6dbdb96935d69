#include "tokenizer/detokenizer.h"

#include "tokenizer/utf8.h"

namespace tierlm::tokenizer {
namespace {
constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";
}  // namespace

Detokenizer::Detokenizer(const Tokenizer& tokenizer, Options options)
    : tokenizer_(&tokenizer),
      render_special_(options.render_special),
      strip_leading_space_(options.strip_leading_space.value_or(tokenizer.vocab().add_space_prefix)) {}

std::string Detokenizer::Push(int32_t id) {
  std::string piece = tokenizer_->TokenToPiece(id, render_special_);
  const bool control = tokenizer_->vocab().Attr(id) & (kAttrControl | kAttrUnknown);
  if (!control && !seen_text_) {
    seen_text_ = true;
    if (strip_leading_space_ && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  }
  return PushBytes(piece);
}

std::string Detokenizer::PushBytes(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const Utf8Check c = CheckUtf8Sequence(std::string_view(pending_).substr(i));
    if (c.status == Utf8Status::kIncomplete) break;  // hold back the tail
    if (c.status == Utf8Status::kComplete) {
      out.append(pending_, i, c.length);
    } else {
      out.append(kReplacementUtf8);
    }
    i += c.length;
  }
  pending_.erase(0, i);
  return out;
}

std::string Detokenizer::Flush() {
  std::string out = pending_.empty() ? std::string() : std::string(kReplacementUtf8);
  pending_.clear();
  return out;
}

void Detokenizer::Reset() {
  pending_.clear();
  seen_text_ = false;
}

}  // namespace tierlm::tokenizer
