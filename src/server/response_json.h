// The JSON shapes of OpenAI's answers: chat completions and (legacy) completions, whole and
// as stream chunks, usage, logprobs, models and errors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/request_stream.h"
#include "tokenizer/tokenizer.h"

namespace tierlm::server {

// What one request's answer needs besides its choices.
struct ResponseHeader {
  std::string id;       // "chatcmpl-..." / "cmpl-...": one per request, on every chunk
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// A choice as accumulated for a non-streamed answer.
struct ChoiceResult {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  FinishReason finish = FinishReason::kNone;
};

// A fresh request id: prefix and 24 random hex digits.
std::string NewRequestId(const std::string& prefix);

// Token counts of one request's answer.
struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens reused from the prefix cache
};

// {"prompt_tokens", "completion_tokens", "total_tokens",
//  "prompt_tokens_details": {"cached_tokens"}}
nlohmann::json UsageJson(const Usage& u);
// {"error": {"message", "type", "param", "code"}}; param and code are null when empty.
nlohmann::json ErrorJson(const std::string& message, const std::string& type, const std::string& param = "",
                         const std::string& code = "");

// Chat logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
nlohmann::json ChatLogprobsJson(const std::vector<TokenLogprob>& lps, const tokenizer::Tokenizer& tok);
// Completions logprobs: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}; offsets
// count from text_offset0.
nlohmann::json CompletionLogprobsJson(const std::vector<TokenLogprob>& lps, const tokenizer::Tokenizer& tok,
                                      int64_t text_offset0);

nlohmann::json ChatResponseJson(const ResponseHeader& h, const std::vector<ChoiceResult>& choices, bool logprobs,
                                const Usage& usage, const tokenizer::Tokenizer& tok);
nlohmann::json CompletionResponseJson(const ResponseHeader& h, const std::vector<ChoiceResult>& choices,
                                      bool logprobs, const Usage& usage, const tokenizer::Tokenizer& tok);

// A chat stream chunk for one choice: delta {"role"?, "content"?}, finish_reason, logprobs.
// with_usage_null adds "usage": null (stream_options.include_usage asks for it).
nlohmann::json ChatChunkJson(const ResponseHeader& h, int32_t index, const std::string* role,
                             const std::string* content, FinishReason finish, const nlohmann::json& logprobs,
                             bool with_usage_null);
nlohmann::json CompletionChunkJson(const ResponseHeader& h, int32_t index, const std::string& text,
                                   FinishReason finish, const nlohmann::json& logprobs, bool with_usage_null);
// The last chunk of a stream with include_usage: no choices, the usage.
nlohmann::json UsageChunkJson(const ResponseHeader& h, bool chat, const Usage& usage);

}  // namespace tierlm::server
