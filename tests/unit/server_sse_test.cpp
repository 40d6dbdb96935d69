// SSE framing and the JSON shapes of OpenAI's answers and stream chunks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/response_json.h"
#include "server/sse.h"

namespace tierlm::server {
namespace {

using nlohmann::json;

TEST(SseFramingTest, EventIsOneDataLineAndABlankLine) {
  const std::string e = SseEvent(json{{"a", "x\ny"}, {"b", 1}});
  ASSERT_GE(e.size(), 8u);
  EXPECT_EQ(e.rfind("data: ", 0), 0u);
  EXPECT_EQ(e.substr(e.size() - 2), "\n\n");
  // The newline inside the string is escaped: one line only.
  EXPECT_EQ(e.find('\n'), e.size() - 2);
  EXPECT_EQ(json::parse(e.substr(6, e.size() - 8)), (json{{"a", "x\ny"}, {"b", 1}}));
  EXPECT_EQ(SseDone(), "data: [DONE]\n\n");
}

TEST(SseFramingTest, InvalidUtf8IsReplacedNotThrown) {
  const std::string bad = std::string("ok\xff") + "\xe2\x82";
  const std::string e = SseEvent(json{{"t", bad}});
  const json back = json::parse(e.substr(6, e.size() - 8));
  EXPECT_EQ(back["t"].get<std::string>().substr(0, 2), "ok");
  EXPECT_NE(back["t"].get<std::string>().find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
}

TEST(SseFramingTest, ChatChunkShapes) {
  ResponseHeader h{"chatcmpl-1", 123, "m"};
  const std::string role = "assistant", empty, hi = "Hi";
  const json first = ChatChunkJson(h, 0, &role, &empty, FinishReason::kNone, nullptr, false);
  EXPECT_EQ(first["id"], "chatcmpl-1");
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["created"], 123);
  EXPECT_EQ(first["model"], "m");
  EXPECT_EQ(first["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(first.contains("usage"));
  const json mid = ChatChunkJson(h, 1, nullptr, &hi, FinishReason::kNone, nullptr, true);
  EXPECT_EQ(mid["choices"][0]["index"], 1);
  EXPECT_EQ(mid["choices"][0]["delta"], (json{{"content", "Hi"}}));
  EXPECT_TRUE(mid.contains("usage"));
  EXPECT_TRUE(mid["usage"].is_null());
  const json last = ChatChunkJson(h, 0, nullptr, nullptr, FinishReason::kLength, nullptr, false);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  const json usage = UsageChunkJson(h, true, {5, 7, 3});
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"], (json{{"prompt_tokens", 5},
                                  {"completion_tokens", 7},
                                  {"total_tokens", 12},
                                  {"prompt_tokens_details", {{"cached_tokens", 3}}}}));
}

TEST(SseFramingTest, CompletionChunkAndErrorShapes) {
  ResponseHeader h{"cmpl-1", 1, "m"};
  const json c = CompletionChunkJson(h, 0, "abc", FinishReason::kStop, nullptr, false);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "abc");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
  const json e = ErrorJson("bad", "invalid_request_error", "n", "");
  EXPECT_EQ(e["error"]["message"], "bad");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "n");
  EXPECT_TRUE(e["error"]["code"].is_null());
}

TEST(SseFramingTest, RequestIdsAreFreshAndPrefixed) {
  const std::string a = NewRequestId("chatcmpl-"), b = NewRequestId("chatcmpl-");
  EXPECT_EQ(a.rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(a.size(), 9u + 24u);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace tierlm::server
