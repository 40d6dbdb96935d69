#include "eval/passkey_task.h"

#include <cmath>
#include <string>

namespace tierlm::eval {
namespace {

constexpr const char* kHeader = "There is a pass key hidden in this text. Find it and remember it.";
constexpr const char* kQuestion = "What is the pass key? The pass key is #";

std::string Needle(int64_t key) {
  const std::string k = std::to_string(key);
  return "The pass key is #" + k + "#. Remember it. #" + k + "# is the pass key.";
}

}  // namespace

std::vector<int32_t> TokenizeLines(const tokenizer::Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> out;
  int32_t newline = tok.vocab().Find("<0x0A>");
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    if (!line.empty()) {
      const std::vector<int32_t> ids = tok.Encode(line, false, false);
      out.insert(out.end(), ids.begin(), ids.end());
      if (newline != tokenizer::kNoToken) out.push_back(newline);
    }
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return out;
}

PasskeyTask::PasskeyTask(const tokenizer::Tokenizer& tok, std::vector<int32_t> filler)
    : tok_(&tok), filler_(std::move(filler)), header_(tok.Encode(kHeader, false, false)),
      question_(tok.Encode(kQuestion, false, false)) {}

Result<PasskeyDoc> PasskeyTask::Make(int64_t n, double depth, std::mt19937_64& rng) const {
  if (!(depth >= 0.0 && depth <= 1.0)) return Status::InvalidArgument("pass key depth must be in [0, 1]");
  PasskeyDoc d;
  d.key = std::uniform_int_distribution<int64_t>(10000, 99999)(rng);
  const std::vector<int32_t> needle = tok_->Encode(Needle(d.key), false, false);
  // The key's digits, each its own token, as they follow the needle's '#' (no space prefix).
  for (char c : std::to_string(d.key)) {
    const int32_t id = tok_->vocab().Find(std::string(1, c));
    if (id == tokenizer::kNoToken)
      return Status::InvalidArgument(std::string("pass key: the vocabulary has no token for the digit ") + c);
    d.answer.push_back(id);
  }
  const int64_t fixed = 1 + static_cast<int64_t>(header_.size() + needle.size() + question_.size() + d.answer.size());
  const int64_t n_fill = n - fixed;
  if (n_fill < 0)
    return Status::InvalidArgument("a pass-key document needs at least " + std::to_string(fixed) + " tokens, not " +
                                   std::to_string(n));
  if (n_fill >= filler_tokens())
    return Status::InvalidArgument("a pass-key document of " + std::to_string(n) + " tokens needs more filler than the " +
                                   std::to_string(filler_tokens()) + " tokens of text given");
  const int64_t start = std::uniform_int_distribution<int64_t>(0, filler_tokens() - n_fill - 1)(rng);
  const int64_t a = std::llround(depth * static_cast<double>(n_fill));
  const auto f = filler_.begin() + start;
  d.prompt.reserve(static_cast<size_t>(n));
  d.prompt.push_back(tok_->vocab().bos_id);
  d.prompt.insert(d.prompt.end(), header_.begin(), header_.end());
  d.prompt.insert(d.prompt.end(), f, f + a);
  d.needle_pos = static_cast<int64_t>(d.prompt.size());
  d.prompt.insert(d.prompt.end(), needle.begin(), needle.end());
  d.prompt.insert(d.prompt.end(), f + a, f + n_fill);
  d.prompt.insert(d.prompt.end(), question_.begin(), question_.end());
  return d;
}

}  // namespace tierlm::eval
