#include "server/request.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

namespace tierlm::server {
namespace {

using nlohmann::json;

struct Fail {
  RequestError e;
};

[[noreturn]] void Bad(const std::string& param, const std::string& message, const std::string& code = "") {
  RequestError e;
  e.http_status = 400;
  e.param = param;
  e.message = message;
  e.code = code;
  throw Fail{e};
}

const char* TypeName(const json& v) { return v.type_name(); }

// A field that may be absent or null (OpenAI treats null as "not given").
const json* Field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

double Number(const json& v, const std::string& name, double lo, double hi) {
  if (!v.is_number()) Bad(name, "'" + name + "' must be a number, not " + TypeName(v));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    char b[160];
    std::snprintf(b, sizeof b, "'%s' is %g: must be in [%g, %g]", name.c_str(), x, lo, hi);
    Bad(name, b);
  }
  return x;
}

int64_t Integer(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    Bad(name, "'" + name + "' must be an integer, not " + (v.is_number() ? std::string("a fraction") : TypeName(v)));
  const double d = v.get<double>();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)))
    Bad(name, "'" + name + "' is " + v.dump() + ": must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
}

bool Bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) Bad(name, "'" + name + "' must be a boolean, not " + TypeName(v));
  return v.get<bool>();
}

std::string String(const json& v, const std::string& name) {
  if (!v.is_string()) Bad(name, "'" + name + "' must be a string, not " + TypeName(v));
  return v.get<std::string>();
}

// A message's content: a string, or an array of {"type":"text","text":...} parts.
std::string Content(const json& v, const std::string& name) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      const json& part = v[i];
      const std::string pname = name + "[" + std::to_string(i) + "]";
      if (!part.is_object()) Bad(pname, "'" + pname + "' must be an object");
      const json* type = Field(part, "type");
      if (!type || String(*type, pname + ".type") != "text")
        Bad(pname, "'" + pname + "': only parts of type 'text' are supported");
      const json* text = Field(part, "text");
      if (!text) Bad(pname + ".text", "'" + pname + ".text' is missing");
      out += String(*text, pname + ".text");
    }
    return out;
  }
  Bad(name, "'" + name + "' must be a string or an array of text parts, not " + std::string(TypeName(v)));
}

void ParseMessages(const json& body, const RequestLimits& limits, CompletionRequest* r) {
  const json* msgs = Field(body, "messages");
  if (!msgs) Bad("messages", "'messages' is missing");
  if (!msgs->is_array()) Bad("messages", "'messages' must be an array, not " + std::string(TypeName(*msgs)));
  if (msgs->empty()) Bad("messages", "'messages' is empty: at least one message is needed");
  if (msgs->size() > limits.max_messages)
    Bad("messages", "'messages' has " + std::to_string(msgs->size()) + " messages: at most " +
                        std::to_string(limits.max_messages) + " are accepted");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string name = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) Bad(name, "'" + name + "' must be an object");
    const json* role = Field(m, "role");
    if (!role) Bad(name + ".role", "'" + name + ".role' is missing");
    std::string rs = String(*role, name + ".role");
    if (rs == "developer") rs = "system";  // OpenAI's newer name for the system role
    if (rs != "system" && rs != "user" && rs != "assistant")
      Bad(name + ".role", "'" + name + ".role' is '" + rs + "': must be system, user or assistant");
    const json* content = Field(m, "content");
    std::string cs;
    if (content) cs = Content(*content, name + ".content");
    else if (rs != "assistant") Bad(name + ".content", "'" + name + ".content' is missing");
    r->messages.push_back({rs, std::move(cs)});
  }
}

void ParsePrompt(const json& body, CompletionRequest* r) {
  const json* p = Field(body, "prompt");
  if (!p) Bad("prompt", "'prompt' is missing");
  if (p->is_string()) {
    r->prompt = p->get<std::string>();
    return;
  }
  if (p->is_array()) {
    if (p->size() == 1 && (*p)[0].is_string()) {
      r->prompt = (*p)[0].get<std::string>();
      return;
    }
    if (!p->empty() && std::all_of(p->begin(), p->end(), [](const json& x) { return x.is_number_integer(); })) {
      r->prompt_is_tokens = true;
      for (size_t i = 0; i < p->size(); ++i)
        r->prompt_tokens.push_back(static_cast<int32_t>(
            Integer((*p)[i], "prompt[" + std::to_string(i) + "]", 0, std::numeric_limits<int32_t>::max())));
      return;
    }
    Bad("prompt", "'prompt' must be a string, a list of one string, or a list of token ids (batches of prompts "
                  "are not supported: send one request each)");
  }
  Bad("prompt", "'prompt' must be a string or a list of token ids, not " + std::string(TypeName(*p)));
}

void ParseStop(const json& v, const RequestLimits& limits, CompletionRequest* r) {
  std::vector<std::string> stops;
  if (v.is_string()) {
    stops.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) stops.push_back(String(v[i], "stop[" + std::to_string(i) + "]"));
  } else {
    Bad("stop", "'stop' must be a string or a list of strings, not " + std::string(TypeName(v)));
  }
  if (stops.size() > limits.max_stop)
    Bad("stop", "'stop' has " + std::to_string(stops.size()) + " strings: at most " + std::to_string(limits.max_stop));
  for (auto& s : stops) {
    if (s.size() > limits.max_stop_bytes)
      Bad("stop", "a stop string of " + std::to_string(s.size()) + " bytes: at most " +
                      std::to_string(limits.max_stop_bytes));
    if (!s.empty()) r->stop.push_back(std::move(s));  // an empty stop string would match everywhere
  }
}

void ParseLogitBias(const json& v, const RequestLimits& limits, CompletionRequest* r) {
  if (!v.is_object()) Bad("logit_bias", "'logit_bias' must be an object of token id -> bias");
  if (v.size() > limits.max_logit_bias)
    Bad("logit_bias", "'logit_bias' has " + std::to_string(v.size()) + " entries: at most " +
                          std::to_string(limits.max_logit_bias));
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    int64_t id = -1;
    if (key.empty() || key.size() > 10 || key.find_first_not_of("0123456789") != std::string::npos)
      Bad("logit_bias", "'logit_bias' key '" + key.substr(0, 32) + "' is not a token id");
    id = std::stoll(key);
    if (id > std::numeric_limits<int32_t>::max()) Bad("logit_bias", "'logit_bias' key " + key + " is not a token id");
    const float bias = static_cast<float>(Number(it.value(), "logit_bias." + key, -100.0, 100.0));
    r->logit_bias.emplace_back(static_cast<int32_t>(id), bias);
  }
}

CompletionRequest Parse(const json& body, RequestKind kind, const RequestLimits& limits) {
  if (!body.is_object()) Bad("", "the request body must be a JSON object, not " + std::string(TypeName(body)));
  CompletionRequest r;
  r.kind = kind;
  if (const json* v = Field(body, "model")) r.model = String(*v, "model");
  if (kind == RequestKind::kChat) ParseMessages(body, limits, &r);
  else ParsePrompt(body, &r);
  if (const json* v = Field(body, "stream")) r.stream = Bool(*v, "stream");
  if (const json* v = Field(body, "stream_options")) {
    if (!v->is_object()) Bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) Bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (const json* u = Field(*v, "include_usage")) r.include_usage = Bool(*u, "stream_options.include_usage");
  }
  const json* mt = Field(body, "max_completion_tokens");
  const char* mt_name = "max_completion_tokens";
  if (!mt) {
    mt = Field(body, "max_tokens");
    mt_name = "max_tokens";
  }
  if (mt) r.max_tokens = Integer(*mt, mt_name, 1, limits.max_tokens);
  if (const json* v = Field(body, "temperature")) r.temperature = static_cast<float>(Number(*v, "temperature", 0, 2));
  if (const json* v = Field(body, "top_p")) r.top_p = static_cast<float>(Number(*v, "top_p", 0, 1));
  if (const json* v = Field(body, "top_k")) r.top_k = static_cast<int32_t>(Integer(*v, "top_k", 0, 1 << 30));
  if (const json* v = Field(body, "min_p")) r.min_p = static_cast<float>(Number(*v, "min_p", 0, 1));
  if (const json* v = Field(body, "repeat_penalty"))
    r.repeat_penalty = static_cast<float>(Number(*v, "repeat_penalty", 1e-3, 100));
  if (const json* v = Field(body, "presence_penalty"))
    r.presence_penalty = static_cast<float>(Number(*v, "presence_penalty", -2, 2));
  if (const json* v = Field(body, "frequency_penalty"))
    r.frequency_penalty = static_cast<float>(Number(*v, "frequency_penalty", -2, 2));
  if (const json* v = Field(body, "seed")) {
    if (!v->is_number_integer()) Bad("seed", "'seed' must be an integer");
    r.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  if (const json* v = Field(body, "stop")) ParseStop(*v, limits, &r);
  if (const json* v = Field(body, "n")) r.n = static_cast<int32_t>(Integer(*v, "n", 1, limits.max_n));
  if (kind == RequestKind::kChat) {
    if (const json* v = Field(body, "logprobs")) r.logprobs = Bool(*v, "logprobs");
    if (const json* v = Field(body, "top_logprobs")) {
      r.top_logprobs = static_cast<int32_t>(Integer(*v, "top_logprobs", 0, limits.max_top_logprobs));
      if (!r.logprobs) Bad("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    }
  } else if (const json* v = Field(body, "logprobs")) {
    // The completions API: logprobs is the number of alternatives (0-5 in OpenAI's).
    r.logprobs = true;
    r.top_logprobs = static_cast<int32_t>(Integer(*v, "logprobs", 0, limits.max_top_logprobs));
  }
  if (const json* v = Field(body, "logit_bias")) ParseLogitBias(*v, limits, &r);
  if (const json* v = Field(body, "user")) r.user = String(*v, "user");
  if (const json* v = Field(body, "cache_salt")) {
    r.cache_salt = String(*v, "cache_salt");
    if (r.cache_salt.size() > 1024) Bad("cache_salt", "'cache_salt' is longer than 1024 bytes");
  }
  if (kind == RequestKind::kCompletion) {
    if (const json* v = Field(body, "echo"); v && Bool(*v, "echo")) Bad("echo", "'echo' is not supported");
    if (const json* v = Field(body, "best_of"); v && Integer(*v, "best_of", 1, limits.max_n) != r.n)
      Bad("best_of", "'best_of' other than n is not supported");
    if (const json* v = Field(body, "suffix"); v && !String(*v, "suffix").empty())
      Bad("suffix", "'suffix' is not supported");
  } else {
    if (const json* v = Field(body, "tools"); v && !(v->is_array() && v->empty()))
      Bad("tools", "'tools' (function calling) is not supported");
    if (const json* v = Field(body, "response_format")) {
      const json* t = v->is_object() ? Field(*v, "type") : nullptr;
      if (!t || !t->is_string() || t->get<std::string>() != "text")
        Bad("response_format", "only 'response_format' {\"type\": \"text\"} is supported");
    }
  }
  return r;
}

}  // namespace

ParseResult ParseCompletionRequest(std::string_view body, RequestKind kind, const RequestLimits& limits) {
  ParseResult out;
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    out.error.message = "the request body is not valid JSON";
    // Say where it broke: nlohmann's own message names the byte.
    try {
      const json again = json::parse(body.begin(), body.end());
      (void)again;
    } catch (const json::exception& e) {
      out.error.message += std::string(" (") + e.what() + ")";
    }
    return out;
  }
  try {
    out.request = Parse(j, kind, limits);
  } catch (const Fail& f) {
    out.error = f.e;
  } catch (const json::exception& e) {
    out.error.message = std::string("the request body is malformed: ") + e.what();
  }
  return out;
}

}  // namespace tierlm::server
