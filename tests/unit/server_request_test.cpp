// The request parser of tierlm serve: OpenAI's fields, and every malformed or out-of-bounds
// body answered with a 400 naming the field (never a crash).
#include "server/request.h"

#include <gtest/gtest.h>

#include <string>

namespace tierlm::server {
namespace {

ParseResult Chat(const std::string& body, const RequestLimits& l = {}) {
  return ParseCompletionRequest(body, RequestKind::kChat, l);
}
ParseResult Completion(const std::string& body, const RequestLimits& l = {}) {
  return ParseCompletionRequest(body, RequestKind::kCompletion, l);
}

TEST(RequestParseTest, ChatFieldsAreRead) {
  auto r = Chat(R"({"model":"m","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]},
      {"role":"assistant","content":"Hello"},{"role":"user","content":"Again"}],
      "max_completion_tokens":7,"temperature":0,"top_p":0.5,"seed":3,"stop":["\n","END"],
      "presence_penalty":0.5,"frequency_penalty":-0.5,"logprobs":true,"top_logprobs":3,
      "logit_bias":{"5":-100,"17":2.5},"n":2,"user":"u1","stream":true,"stream_options":{"include_usage":true},
      "top_k":40,"min_p":0.1,"repeat_penalty":1.1})");
  ASSERT_TRUE(r.ok()) << r.error.message;
  const CompletionRequest& q = *r.request;
  EXPECT_EQ(q.model, "m");
  ASSERT_EQ(q.messages.size(), 4u);
  EXPECT_EQ(q.messages[0].role, "system");
  EXPECT_EQ(q.messages[1].content, "Hi there");
  EXPECT_EQ(q.messages[2].role, "assistant");
  EXPECT_EQ(q.max_tokens, 7);
  EXPECT_EQ(q.temperature, 0.0f);
  EXPECT_EQ(q.top_p, 0.5f);
  EXPECT_EQ(q.seed, 3u);
  EXPECT_EQ(q.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(q.presence_penalty, 0.5f);
  EXPECT_EQ(q.frequency_penalty, -0.5f);
  EXPECT_TRUE(q.logprobs);
  EXPECT_EQ(q.top_logprobs, 3);
  ASSERT_EQ(q.logit_bias.size(), 2u);
  EXPECT_EQ(q.logit_bias[0], (std::pair<int32_t, float>{17, 2.5f}));  // object keys come sorted
  EXPECT_EQ(q.logit_bias[1], (std::pair<int32_t, float>{5, -100.0f}));
  EXPECT_EQ(q.n, 2);
  EXPECT_EQ(q.user, "u1");
  EXPECT_TRUE(q.stream);
  EXPECT_TRUE(q.include_usage);
  EXPECT_EQ(q.top_k, 40);
  EXPECT_FLOAT_EQ(q.min_p, 0.1f);
  EXPECT_FLOAT_EQ(q.repeat_penalty, 1.1f);
}

TEST(RequestParseTest, DefaultsAreOpenAis) {
  auto r = Chat(R"({"messages":[{"role":"user","content":"Hi"}]})");
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_FALSE(r.request->max_tokens.has_value());
  EXPECT_EQ(r.request->temperature, 1.0f);
  EXPECT_EQ(r.request->top_p, 1.0f);
  EXPECT_EQ(r.request->n, 1);
  EXPECT_FALSE(r.request->stream);
  EXPECT_FALSE(r.request->seed.has_value());
  EXPECT_TRUE(r.request->stop.empty());
}

TEST(RequestParseTest, MaxTokensAndNullsAndStopString) {
  auto r = Completion(R"({"prompt":"Once","max_tokens":5,"stop":"x","temperature":null,"seed":null})");
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.request->prompt, "Once");
  EXPECT_EQ(r.request->max_tokens, 5);
  EXPECT_EQ(r.request->stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.request->temperature, 1.0f);
  auto t = Completion(R"({"prompt":[1,2,3]})");
  ASSERT_TRUE(t.ok()) << t.error.message;
  EXPECT_TRUE(t.request->prompt_is_tokens);
  EXPECT_EQ(t.request->prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  auto one = Completion(R"({"prompt":["Hello"],"logprobs":2})");
  ASSERT_TRUE(one.ok()) << one.error.message;
  EXPECT_EQ(one.request->prompt, "Hello");
  EXPECT_TRUE(one.request->logprobs);
  EXPECT_EQ(one.request->top_logprobs, 2);
}

struct BadCase {
  const char* body;
  bool chat;
  const char* param;  // expected field at fault
};

TEST(RequestParseTest, BadBodiesAre400NamingTheField) {
  const BadCase cases[] = {
      {R"({"messages":[{"role":"user","content":"Hi"}])", true, ""},   // truncated
      {R"(not json)", true, ""},
      {R"([1,2])", true, ""},
      {R"({})", true, "messages"},
      {R"({"messages":[]})", true, "messages"},
      {R"({"messages":"hi"})", true, "messages"},
      {R"({"messages":[{"role":"robot","content":"x"}]})", true, "messages[0].role"},
      {R"({"messages":[{"role":"user"}]})", true, "messages[0].content"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", true, "messages[0].content[0]"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})", true, "temperature"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":3})", true, "temperature"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_p":1.5})", true, "top_p"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})", true, "max_tokens"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":2.5})", true, "max_tokens"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":-1})", true, "max_tokens"},
      {R"({"messages":[{"role":"user","content":"x"}],"n":9})", true, "n"},
      {R"({"messages":[{"role":"user","content":"x"}],"n":0})", true, "n"},
      {R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})", true, "top_logprobs"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", true, "top_logprobs"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]})", true, "stop"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":7})", true, "stop"},
      {R"({"messages":[{"role":"user","content":"x"}],"logit_bias":{"abc":1}})", true, "logit_bias"},
      {R"({"messages":[{"role":"user","content":"x"}],"logit_bias":{"5":101}})", true, "logit_bias.5"},
      {R"({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})", true, "stream_options"},
      {R"({"messages":[{"role":"user","content":"x"}],"stream":"yes"})", true, "stream"},
      {R"({"messages":[{"role":"user","content":"x"}],"presence_penalty":2.5})", true, "presence_penalty"},
      {R"({"messages":[{"role":"user","content":"x"}],"model":5})", true, "model"},
      {R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})", true, "tools"},
      {R"({})", false, "prompt"},
      {R"({"prompt":["a","b"]})", false, "prompt"},
      {R"({"prompt":[1,-2]})", false, "prompt[1]"},
      {R"({"prompt":{"a":1}})", false, "prompt"},
      {R"({"prompt":"x","echo":true})", false, "echo"},
      {R"({"prompt":"x","logprobs":true})", false, "logprobs"},
  };
  for (const BadCase& c : cases) {
    auto r = c.chat ? Chat(c.body) : Completion(c.body);
    EXPECT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.error.http_status, 400) << c.body;
    EXPECT_EQ(r.error.param, c.param) << c.body << ": " << r.error.message;
    EXPECT_FALSE(r.error.message.empty()) << c.body;
  }
}

TEST(RequestParseTest, LimitsAreConfigurable) {
  RequestLimits l;
  l.max_messages = 2;
  auto r = Chat(R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]})", l);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.param, "messages");
  EXPECT_NE(r.error.message.find("at most 2"), std::string::npos) << r.error.message;
  l.max_n = 2;
  EXPECT_FALSE(Chat(R"({"messages":[{"role":"user","content":"a"}],"n":3})", l).ok());
  EXPECT_TRUE(Chat(R"({"messages":[{"role":"user","content":"a"}],"n":2})", l).ok());
}

TEST(RequestParseTest, DeepNestingAndHugeNumbersDoNotCrash) {
  std::string deep(100000, '[');
  EXPECT_FALSE(Chat(deep).ok());
  std::string deep_obj = R"({"messages":[{"role":"user","content":"x"}],"user":)" + std::string(50000, '[') +
                         std::string(50000, ']') + "}";
  auto r = Chat(deep_obj);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error.param, "user");
  EXPECT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1e300})").ok());
  EXPECT_FALSE(Chat(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999999})").ok());
  EXPECT_FALSE(Chat(std::string("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}")).ok());
  // A number too large for a double is an out_of_range inside nlohmann, still a 400 (found by the fuzzer).
  auto huge = Chat(R"({"mjd":44444000000E0000000000001881541138a})");
  EXPECT_FALSE(huge.ok());
  EXPECT_EQ(huge.error.http_status, 400);
  auto overflow = Chat(R"({"messages":[{"role":"user","content":"x"}],"seed":1e400})");
  EXPECT_FALSE(overflow.ok());
  EXPECT_EQ(overflow.error.http_status, 400);
}

}  // namespace
}  // namespace tierlm::server
