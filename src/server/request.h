// An OpenAI request (POST /v1/chat/completions, /v1/completions) parsed and checked: the
// JSON body becomes a CompletionRequest, or a RequestError that says which field is wrong
// and which HTTP status answers it. Nothing here touches a model: the prompt is text (a
// chat's messages are formatted by the caller's template), tokenized by the caller.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/chat_template.h"

namespace tierlm::server {

// Bounds a request must stay within (each violation is a 4xx, never a crash).
struct RequestLimits {
  size_t max_messages = 1024;
  int32_t max_n = 8;              // choices per request
  int32_t max_top_logprobs = 20;  // OpenAI's bound
  size_t max_stop = 4;            // stop strings (OpenAI's bound)
  size_t max_stop_bytes = 256;    // each
  size_t max_logit_bias = 1024;   // entries
  int64_t max_tokens = 1 << 20;   // an upper bound on max_tokens (the context bounds it further)
};

enum class RequestKind { kChat, kCompletion };

struct CompletionRequest {
  RequestKind kind = RequestKind::kCompletion;
  std::string model;                   // "" when absent
  std::vector<ChatMessage> messages;   // kChat
  std::string prompt;                  // kCompletion (text)
  std::vector<int32_t> prompt_tokens;  // kCompletion given as token ids (then prompt is "")
  bool prompt_is_tokens = false;
  bool stream = false;
  bool include_usage = false;          // stream_options.include_usage
  std::optional<int64_t> max_tokens;   // max_tokens / max_completion_tokens; nullopt: until the context is full
  float temperature = 1.0f;            // OpenAI's default
  float top_p = 1.0f;
  int32_t top_k = 0;                   // llama.cpp extra; 0: off
  float min_p = 0.0f;                  // llama.cpp extra; 0: off
  float repeat_penalty = 1.0f;         // llama.cpp extra; 1: off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int32_t n = 1;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::string user;
  std::string cache_salt;  // isolates this tenant's cached prompt prefixes (vLLM's field)
};

struct RequestError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the field at fault ("" if none)
  std::string code;   // e.g. "context_length_exceeded" ("" if none)
};

// A body is parsed whole; malformed JSON, a wrong type, a value out of range or a limit
// crossed each give a RequestError naming the field.
struct ParseResult {
  std::optional<CompletionRequest> request;
  RequestError error;
  bool ok() const { return request.has_value(); }
};

ParseResult ParseCompletionRequest(std::string_view body, RequestKind kind, const RequestLimits& limits);

}  // namespace tierlm::server
