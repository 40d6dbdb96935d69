#include "server/response_json.h"

#include <random>

namespace tierlm::server {

using nlohmann::json;

std::string NewRequestId(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += hex[rng() & 15];
  return id;
}

json UsageJson(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json ErrorJson(const std::string& message, const std::string& type, const std::string& param,
               const std::string& code) {
  json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return {{"error", e}};
}

namespace {

json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char ch : s) b.push_back(static_cast<int>(ch));
  return b;
}

json FinishJson(FinishReason r) {
  if (r == FinishReason::kNone) return nullptr;
  return FinishReasonName(r);
}

}  // namespace

json ChatLogprobsJson(const std::vector<TokenLogprob>& lps, const tokenizer::Tokenizer& tok) {
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    const std::string piece = tok.TokenToPiece(lp.token, /*render_special=*/false);
    json top = json::array();
    for (const TopLogprob& t : lp.top) {
      const std::string p = tok.TokenToPiece(t.token, false);
      top.push_back({{"token", p}, {"logprob", t.logprob}, {"bytes", Bytes(p)}});
    }
    content.push_back({{"token", piece}, {"logprob", lp.logprob}, {"bytes", Bytes(piece)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json CompletionLogprobsJson(const std::vector<TokenLogprob>& lps, const tokenizer::Tokenizer& tok,
                            int64_t text_offset0) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  int64_t off = text_offset0;
  for (const TokenLogprob& lp : lps) {
    const std::string piece = tok.TokenToPiece(lp.token, false);
    tokens.push_back(piece);
    token_logprobs.push_back(lp.logprob);
    json alt = json::object();
    for (const TopLogprob& t : lp.top) alt[tok.TokenToPiece(t.token, false)] = t.logprob;
    top.push_back(alt);
    offsets.push_back(off);
    off += static_cast<int64_t>(piece.size());
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json ChatResponseJson(const ResponseHeader& h, const std::vector<ChoiceResult>& choices, bool logprobs,
                      const Usage& usage, const tokenizer::Tokenizer& tok) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    cs.push_back({{"index", i},
                  {"message", {{"role", "assistant"}, {"content", c.text}}},
                  {"logprobs", logprobs ? ChatLogprobsJson(c.logprobs, tok) : json(nullptr)},
                  {"finish_reason", FinishJson(c.finish)}});
  }
  return {{"id", h.id},        {"object", "chat.completion"},
          {"created", h.created}, {"model", h.model},
          {"choices", cs},     {"usage", UsageJson(usage)}};
}

json CompletionResponseJson(const ResponseHeader& h, const std::vector<ChoiceResult>& choices, bool logprobs,
                            const Usage& usage, const tokenizer::Tokenizer& tok) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    cs.push_back({{"index", i},
                  {"text", c.text},
                  {"logprobs", logprobs ? CompletionLogprobsJson(c.logprobs, tok, 0) : json(nullptr)},
                  {"finish_reason", FinishJson(c.finish)}});
  }
  return {{"id", h.id},        {"object", "text_completion"},
          {"created", h.created}, {"model", h.model},
          {"choices", cs},     {"usage", UsageJson(usage)}};
}

json ChatChunkJson(const ResponseHeader& h, int32_t index, const std::string* role, const std::string* content,
                   FinishReason finish, const json& logprobs, bool with_usage_null) {
  json delta = json::object();
  if (role) delta["role"] = *role;
  if (content) delta["content"] = *content;
  json choice = {{"index", index}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", FinishJson(finish)}};
  json j = {{"id", h.id}, {"object", "chat.completion.chunk"}, {"created", h.created}, {"model", h.model},
            {"choices", json::array({choice})}};
  if (with_usage_null) j["usage"] = nullptr;
  return j;
}

json CompletionChunkJson(const ResponseHeader& h, int32_t index, const std::string& text, FinishReason finish,
                         const json& logprobs, bool with_usage_null) {
  json choice = {{"index", index}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", FinishJson(finish)}};
  json j = {{"id", h.id}, {"object", "text_completion"}, {"created", h.created}, {"model", h.model},
            {"choices", json::array({choice})}};
  if (with_usage_null) j["usage"] = nullptr;
  return j;
}

json UsageChunkJson(const ResponseHeader& h, bool chat, const Usage& u) {
  return {{"id", h.id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", h.created},
          {"model", h.model},
          {"choices", json::array()},
          {"usage", UsageJson(u)}};
}

}  // namespace tierlm::server
