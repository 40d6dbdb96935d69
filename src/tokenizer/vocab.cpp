#include "tokenizer/vocab.h"

#include <algorithm>
#include <cctype>

namespace tierlm::tokenizer {
namespace {

constexpr std::string_view kPrefix = "tokenizer.ggml.";

uint32_t AttrFromType(TokenType type) {
  switch (type) {
    case TokenType::kNormal: return kAttrNormal;
    case TokenType::kUnknown: return kAttrUnknown;
    case TokenType::kControl: return kAttrControl;
    case TokenType::kUserDefined: return kAttrUserDefined;
    case TokenType::kUnused: return kAttrUnused;
    case TokenType::kByte: return kAttrByte;
    case TokenType::kUndefined: return 0;
  }
  return 0;
}

// Reads an optional token id key into *id. Absent: *id keeps its default (dropped if
// the default is out of range). 0xFFFFFFFF or -1: none. Otherwise it must be < n.
Status ReadTokenId(const gguf::GgufFile& file, const std::string& key, int32_t n, int32_t* id) {
  if (!file.Find(key)) {
    if (*id >= n) *id = kNoToken;
    return Status::Ok();
  }
  Result<int64_t> v = file.GetI64(key);
  if (!v.ok()) return v.status();
  if (*v == -1 || *v == 0xFFFFFFFFll) {
    *id = kNoToken;
    return Status::Ok();
  }
  if (*v < 0 || *v >= n) {
    return Status::InvalidArgument(file.name() + ": " + key + " = " + std::to_string(*v) +
                                   " is not a token id (vocabulary has " + std::to_string(n) + " tokens)");
  }
  *id = static_cast<int32_t>(*v);
  return Status::Ok();
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

bool Vocab::IsEog(int32_t id) const { return std::binary_search(eog_ids.begin(), eog_ids.end(), id); }

Result<Vocab> Vocab::FromGguf(const gguf::GgufFile& file) {
  const std::string& fname = file.name();
  auto key = [](std::string_view k) { return std::string(kPrefix) + std::string(k); };
  Vocab v;

  // Model type.
  if (!file.Find(key("model"))) return Status::NotFound(fname + ": missing key " + key("model"));
  TIERLM_ASSIGN_OR_RETURN(v.model, file.GetString(key("model")));
  if (v.model == "llama") {
    v.type = VocabType::kSpm;
  } else if (v.model == "gpt2") {
    v.type = VocabType::kBpe;
  } else {
    return Status::Unsupported(fname + ": " + key("model") + " = '" + v.model +
                               "' is not a supported tokenizer (supported: llama, gpt2)");
  }
  TIERLM_ASSIGN_OR_RETURN(v.pre, file.GetStringOr(key("pre"), ""));

  // Tokens, scores, types.
  if (!file.Find(key("tokens"))) return Status::NotFound(fname + ": missing key " + key("tokens"));
  TIERLM_ASSIGN_OR_RETURN(std::vector<std::string> texts, file.GetStringArray(key("tokens")));
  if (texts.empty()) return Status::InvalidArgument(fname + ": " + key("tokens") + " is empty");
  if (texts.size() > static_cast<size_t>(INT32_MAX)) {
    return Status::OutOfRange(fname + ": " + key("tokens") + " has too many entries");
  }
  const int32_t n = static_cast<int32_t>(texts.size());
  std::vector<float> scores;
  if (file.Find(key("scores"))) {
    TIERLM_ASSIGN_OR_RETURN(scores, file.GetF32Array(key("scores")));
    if (scores.size() != texts.size()) {
      return Status::Corruption(fname + ": " + key("scores") + " has " + std::to_string(scores.size()) +
                                " entries for " + std::to_string(n) + " tokens");
    }
  }
  std::vector<int64_t> types;
  if (file.Find(key("token_type"))) {
    TIERLM_ASSIGN_OR_RETURN(types, file.GetIntArray(key("token_type")));
    if (types.size() != texts.size()) {
      return Status::Corruption(fname + ": " + key("token_type") + " has " + std::to_string(types.size()) +
                                " entries for " + std::to_string(n) + " tokens");
    }
  }
  v.tokens.resize(n);
  v.text_to_id.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    TokenData& t = v.tokens[i];
    t.text = std::move(texts[i]);
    if (t.text.empty()) t.text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
    t.score = scores.empty() ? 0.0f : scores[i];
    const int64_t ty = types.empty() ? 1 : types[i];
    t.type = ty >= 0 && ty <= 6 ? static_cast<TokenType>(ty) : TokenType::kUndefined;
    t.attr = AttrFromType(t.type);
    v.text_to_id[t.text] = i;
  }

  // Type-specific defaults, then merges.
  if (v.type == VocabType::kSpm) {
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
  } else {
    v.bos_id = 11;
    v.eos_id = 11;
    TIERLM_ASSIGN_OR_RETURN(v.pre_kind, [&]() -> Result<PreTokenizerKind> {
      Result<PreTokenizerKind> k = PreTokenizerKindFromName(v.pre);
      if (!k.ok()) return k.status().WithContext(fname + ": " + key("pre"));
      return k;
    }());
    const bool llama3_family = v.pre == "llama3" || v.pre == "llama-v3" || v.pre == "llama-bpe" ||
                               v.pre == "falcon3" || v.pre == "falcon-h1" || v.pre == "pixtral" ||
                               v.pre == "midm-2.0" || v.pre == "lfm2";
    v.ignore_merges = llama3_family;
    v.add_bos = llama3_family;
    if (!file.Find(key("merges"))) return Status::NotFound(fname + ": missing key " + key("merges"));
    TIERLM_ASSIGN_OR_RETURN(v.merges, file.GetStringArray(key("merges")));
    for (size_t i = 0; i < v.merges.size(); ++i) {
      if (v.merges[i].size() < 3 || v.merges[i].find(' ', 1) == std::string::npos) {
        return Status::Corruption(fname + ": " + key("merges") + "[" + std::to_string(i) + "] = '" +
                                  v.merges[i] + "' is not 'left right'");
      }
    }
  }

  // Special ids.
  struct IdKey {
    const char* name;
    int32_t* id;
  };
  const IdKey id_keys[] = {
      {"bos_token_id", &v.bos_id},         {"eos_token_id", &v.eos_id},
      {"unknown_token_id", &v.unk_id},     {"padding_token_id", &v.pad_id},
      {"seperator_token_id", &v.sep_id},   {"cls_token_id", &v.cls_id},
      {"mask_token_id", &v.mask_id},       {"eot_token_id", &v.eot_id},
      {"eom_token_id", &v.eom_id},         {"fim_pre_token_id", &v.fim_pre_id},
      {"fim_suf_token_id", &v.fim_suf_id}, {"fim_mid_token_id", &v.fim_mid_id},
      {"fim_pad_token_id", &v.fim_pad_id}, {"fim_rep_token_id", &v.fim_rep_id},
      {"fim_sep_token_id", &v.fim_sep_id},
  };
  for (const IdKey& k : id_keys) TIERLM_RETURN_IF_ERROR(ReadTokenId(file, key(k.name), n, k.id));

  // Flags.
  TIERLM_ASSIGN_OR_RETURN(v.add_bos, file.GetBoolOr(key("add_bos_token"), v.add_bos));
  TIERLM_ASSIGN_OR_RETURN(v.add_eos, file.GetBoolOr(key("add_eos_token"), v.add_eos));
  TIERLM_ASSIGN_OR_RETURN(v.add_space_prefix, file.GetBoolOr(key("add_space_prefix"), v.add_space_prefix));
  if (v.add_bos && v.bos_id == kNoToken) {
    return Status::InvalidArgument(fname + ": " + key("add_bos_token") + " is set but there is no BOS token");
  }
  if (v.add_eos && v.eos_id == kNoToken) {
    return Status::InvalidArgument(fname + ": " + key("add_eos_token") + " is set but there is no EOS token");
  }
  TIERLM_ASSIGN_OR_RETURN(v.chat_template, file.GetStringOr("tokenizer.chat_template", ""));

  // End-of-generation tokens, found by text as llama.cpp does (these become control
  // tokens so that they are only parsed from text when parse_special is on).
  static constexpr std::string_view kEotTexts[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
      "<｜end▁of▁sentence｜>", "<end_of_utterance>",
  };
  static constexpr std::string_view kEogTexts[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
      "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
  };
  if (v.eot_id == kNoToken) {
    for (std::string_view t : kEotTexts) {
      if (int32_t id = v.Find(t); id != kNoToken) {
        v.eot_id = id;
        break;
      }
    }
  }
  std::vector<int32_t> eog;
  for (std::string_view t : kEogTexts) {
    if (int32_t id = v.Find(t); id != kNoToken) {
      eog.push_back(id);
      if (!(v.tokens[id].attr & kAttrControl)) v.tokens[id].attr = kAttrControl;
    }
  }
  if (v.eot_id != kNoToken && !(v.tokens[v.eot_id].attr & kAttrControl)) v.tokens[v.eot_id].attr = kAttrControl;
  for (int32_t id : {v.eos_id, v.eot_id, v.eom_id, v.fim_pad_id, v.fim_rep_id, v.fim_sep_id}) {
    if (id != kNoToken) eog.push_back(id);
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  v.eog_ids = std::move(eog);

  // Per-model strip attributes (llama.cpp sets these by general.name for Phi-3).
  {
    Result<std::string> name = file.GetStringOr("general.name", "");
    std::string lname = name.ok() ? *name : "";
    std::transform(lname.begin(), lname.end(), lname.begin(), [](unsigned char c) { return std::tolower(c); });
    if (Contains(lname, "phi-3") || Contains(lname, "phi3")) {
      for (TokenData& t : v.tokens) {
        if (t.attr & (kAttrControl | kAttrUserDefined | kAttrUnknown)) t.attr |= kAttrRstrip;
      }
      if (int32_t id = v.Find("</s>"); id != kNoToken) v.tokens[id].attr |= kAttrRstrip;
      for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) {
        if (int32_t id = v.Find(t); id != kNoToken) v.tokens[id].attr &= ~kAttrRstrip;
      }
    }
  }

  // Tokens that Encode looks for in text, longest first (ties by id, for determinism).
  for (int32_t i = 0; i < n; ++i) {
    if (v.tokens[i].attr & (kAttrControl | kAttrUserDefined | kAttrUnknown)) v.special_ids.push_back(i);
  }
  std::stable_sort(v.special_ids.begin(), v.special_ids.end(), [&](int32_t a, int32_t b) {
    return v.tokens[a].text.size() > v.tokens[b].text.size();
  });
  return v;
}

}  // namespace tierlm::tokenizer
