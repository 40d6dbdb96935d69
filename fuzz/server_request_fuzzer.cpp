// libFuzzer target: tierlm serve's request parser must answer any body with a request or a
// 4xx RequestError, never crash, hang or allocate without bound; a parsed request's stop
// strings then run through the stop matcher over its own prompt.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/request.h"
#include "server/stop_matcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto kind = (data[0] & 1) ? tierlm::server::RequestKind::kChat : tierlm::server::RequestKind::kCompletion;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  tierlm::server::RequestLimits limits;
  auto r = tierlm::server::ParseCompletionRequest(body, kind, limits);
  if (!r.ok()) {
    if (r.error.http_status < 400 || r.error.http_status > 499 || r.error.message.empty()) __builtin_trap();
    return 0;
  }
  const auto& q = *r.request;
  if (q.n < 1 || q.n > limits.max_n || q.stop.size() > limits.max_stop || q.top_logprobs > limits.max_top_logprobs)
    __builtin_trap();  // the parser promised these bounds
  std::string text = q.prompt;
  for (const auto& m : q.messages) text += m.content;
  tierlm::server::StopMatcher stop(q.stop);
  std::string out;
  for (size_t at = 0; at < text.size(); at += 3) out += stop.Push(std::string_view(text).substr(at, 3));
  out += stop.Flush();
  for (const auto& s : q.stop)
    if (out.find(s) != std::string::npos) __builtin_trap();  // a stop string leaked
  return 0;
}
