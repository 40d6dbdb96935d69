// Server-sent events as OpenAI streams them: each event is one line "data: <json>" and a
// blank line; the stream ends with "data: [DONE]". JSON is written compact (one line), with
// invalid UTF-8 replaced by U+FFFD so that a stray byte can never break the framing.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace tierlm::server {

// "data: {...}\n\n"
std::string SseEvent(const nlohmann::json& payload);
// "data: [DONE]\n\n"
std::string SseDone();
// Compact JSON text, invalid UTF-8 replaced (what every response body uses).
std::string DumpJson(const nlohmann::json& j);

}  // namespace tierlm::server
