#include "tokenizer/tokenizer.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/special_tokens.h"

namespace tierlm::tokenizer {

Result<Tokenizer> Tokenizer::FromGguf(const gguf::GgufFile& file) {
  TIERLM_ASSIGN_OR_RETURN(Vocab vocab, Vocab::FromGguf(file));
  Result<Tokenizer> t = FromVocab(std::move(vocab));
  if (!t.ok()) return t.status().WithContext(file.name());
  return t;
}

Result<Tokenizer> Tokenizer::FromVocab(Vocab vocab) {
  Tokenizer t;
  auto v = std::make_shared<const Vocab>(std::move(vocab));
  if (v->type == VocabType::kSpm) {
    t.spm_ = std::make_shared<const SpmTokenizer>(*v);
  } else {
    TIERLM_ASSIGN_OR_RETURN(BpeTokenizer bpe, BpeTokenizer::Create(*v));
    t.bpe_ = std::make_shared<const BpeTokenizer>(std::move(bpe));
    t.pre_.emplace(v->pre_kind);
  }
  t.vocab_ = std::move(v);
  return t;
}

void Tokenizer::EncodeText(std::string_view text, bool after_special, std::vector<int32_t>* out) const {
  if (spm_) {
    std::string escaped;
    if (vocab_->add_space_prefix && after_special) escaped = "\xE2\x96\x81";
    escaped += EscapeSpmWhitespace(text);
    spm_->Encode(escaped, out);
    return;
  }
  for (const std::string& word : pre_->Split(text)) bpe_->EncodeWord(word, out);
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && vocab_->add_bos) out.push_back(vocab_->bos_id);
  bool after_special = true;  // the start of the text counts as following a special token
  for (const Fragment& f : PartitionSpecialTokens(*vocab_, text, parse_special)) {
    if (f.is_token()) {
      out.push_back(f.token);
      after_special = true;
    } else {
      EncodeText(text.substr(f.offset, f.length), after_special, &out);
      after_special = false;
    }
  }
  if (add_special && vocab_->add_eos) out.push_back(vocab_->eos_id);
  return out;
}

std::string Tokenizer::TokenToPiece(int32_t id, bool render_special) const {
  if (!vocab_->IsValid(id)) return {};
  const TokenData& t = vocab_->tokens[id];
  if (t.attr & (kAttrControl | kAttrUnknown)) return render_special ? t.text : std::string();
  if (t.attr & kAttrUserDefined) return t.text;
  if (vocab_->type == VocabType::kSpm) {
    if (t.attr & kAttrByte) {
      // "<0xNN>"
      if (t.text.size() == 6 && t.text.compare(0, 3, "<0x") == 0 && t.text[5] == '>') {
        return std::string(1, static_cast<char>(std::stoi(t.text.substr(3, 2), nullptr, 16)));
      }
      return t.text;
    }
    std::string s;
    s.reserve(t.text.size());
    for (size_t i = 0; i < t.text.size(); ++i) {
      if (t.text.compare(i, 3, "\xE2\x96\x81") == 0) {
        s.push_back(' ');
        i += 2;
      } else {
        s.push_back(t.text[i]);
      }
    }
    return s;
  }
  return DecodeByteLevel(t.text);
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool render_special) const {
  Detokenizer::Options opts;
  opts.render_special = render_special;
  Detokenizer d(*this, opts);
  std::string out;
  for (int32_t id : ids) out += d.Push(id);
  out += d.Flush();
  return out;
}

}  // namespace tierlm::tokenizer
