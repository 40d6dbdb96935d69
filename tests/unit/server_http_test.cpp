// tierlm serve over HTTP, the binary on a free loopback port with the trained stories260K:
// greedy answers equal `tierlm run`, exact usage, SSE framed as OpenAI's (checked on curl's
// raw bytes), every error status OpenAI-shaped, auth, CORS, limits, a client that goes away
// mid-stream, 16 concurrent streams equal to each alone while /health keeps answering.
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "runtime/chat_template.h"
#include "server/http_server.h"
#include "server_process.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using nlohmann::json;
using testing::ServerProcess;

std::string Model() { return testing::StoriesModel().string(); }

// -c is the KV positions of all slots together (as llama-server's): each request gets -c / -np.
std::vector<std::string> Args(std::vector<std::string> extra) {
  std::vector<std::string> a = {"-m", Model(), "-t", "2"};
  if (std::find(extra.begin(), extra.end(), "-c") == extra.end()) extra.insert(extra.end(), {"-c", "1024"});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

struct Reply {
  int status = -1;
  std::string body;
  httplib::Headers headers;
  json j;  // the body parsed, when it is JSON
};

Reply Do(const ServerProcess& s, const std::string& method, const std::string& path, const std::string& body = "",
         httplib::Headers headers = {}) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(120);
  httplib::Result r = method == "GET"       ? c.Get(path.c_str(), headers)
                      : method == "OPTIONS" ? c.Options(path.c_str(), headers)
                                            : c.Post(path.c_str(), headers, body, "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  out.headers = r->headers;
  out.j = json::parse(r->body, nullptr, false);
  return out;
}

std::string Header(const Reply& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

// The greedy text `tierlm run` prints for a prompt (in a file: chat prompts have newlines).
std::string RunGreedy(const std::string& prompt, int n, bool token_ids = false, const std::string& flags = "-c 256") {
  const auto dir = testing::ScratchDir("serve-run");
  const std::string file = (dir / "prompt.txt").string();
  std::ofstream(file, std::ios::binary) << prompt;
  auto r = testing::RunShell("TIERLM_BATCH_INVARIANT=1 " + testing::Quote(testing::TierlmBinary()) + " run -m " +
                                 testing::Quote(Model()) + " -f " + testing::Quote(file) + " -n " + std::to_string(n) +
                                 " --temp 0 --no-display-prompt -q -t 2 " + flags + (token_ids ? " --token-ids" : ""),
                             /*merge_stderr=*/false);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (!r.output.empty() && r.output.back() == '\n') r.output.pop_back();
  return r.output;
}

int64_t CountIds(const std::string& ids) {
  int64_t n = 0;
  bool in = false;
  for (char ch : ids) {
    if (ch != ' ' && !in) ++n;
    in = ch != ' ';
  }
  return n;
}

void ExpectOpenAiError(const Reply& r, int status, const std::string& what) {
  EXPECT_EQ(r.status, status) << what << ": " << r.body;
  ASSERT_TRUE(r.j.is_object()) << what << ": " << r.body;
  ASSERT_TRUE(r.j.contains("error")) << what << ": " << r.body;
  const json& e = r.j["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << what;
  EXPECT_TRUE(e["type"].is_string()) << what;
  EXPECT_TRUE(e.contains("code")) << what;
}

// The events of a raw SSE body; false if anything is not framed "data: ...\n\n".
bool SplitSse(const std::string& raw, std::vector<std::string>* data) {
  size_t at = 0;
  while (at < raw.size()) {
    const size_t end = raw.find("\n\n", at);
    if (end == std::string::npos) return false;
    const std::string ev = raw.substr(at, end - at);
    if (ev.rfind("data: ", 0) != 0 || ev.find('\n') != std::string::npos) return false;
    data->push_back(ev.substr(6));
    at = end + 2;
  }
  return true;
}

// POSTs with curl, no buffering: the raw bytes of the answer's body.
std::string Curl(const ServerProcess& s, const std::string& path, const json& body) {
  const auto dir = testing::ScratchDir("serve-curl");
  const std::string file = (dir / "body.json").string();
  std::ofstream(file) << body.dump();
  auto r = testing::RunShell("curl -sS -N --max-time 120 -H 'Content-Type: application/json' --data-binary @" +
                                 testing::Quote(file) + " " + testing::Quote(s.url() + path),
                             /*merge_stderr=*/false);
  EXPECT_EQ(r.exit_code, 0) << "curl failed (is curl installed?)";
  return r.output;
}

struct Streamed {
  std::string text;
  std::vector<json> chunks;
  json usage;
  bool done = false;
};

Streamed ParseStream(const std::string& raw, bool chat) {
  Streamed s;
  std::vector<std::string> data;
  EXPECT_TRUE(SplitSse(raw, &data)) << raw;
  for (const auto& d : data) {
    if (d == "[DONE]") {
      EXPECT_FALSE(s.done) << "two [DONE]";
      s.done = true;
      continue;
    }
    EXPECT_FALSE(s.done) << "an event after [DONE]";
    json j = json::parse(d, nullptr, false);
    EXPECT_TRUE(j.is_object()) << d;
    if (!j.is_object()) continue;
    s.chunks.push_back(j);
    if (j.contains("usage") && !j["usage"].is_null()) s.usage = j["usage"];
    for (const auto& c : j["choices"]) {
      if (chat && c["delta"].contains("content")) s.text += c["delta"]["content"].get<std::string>();
      if (!chat) s.text += c["text"].get<std::string>();
    }
  }
  return s;
}

double MetricValue(const std::string& text, const std::string& series) {
  size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::atof(text.c_str() + at + series.size() + 1);
    at += series.size();
  }
  ADD_FAILURE() << "no series " << series;
  return -1;
}

// /metrics once `series` reads `want` (gauges are published after the step that changed
// them), or after about 6 s, whatever it reads then.
std::string MetricsOnce(const ServerProcess& s, const std::string& series, double want) {
  std::string metrics = Do(s, "GET", "/metrics").body;
  for (int i = 0; i < 300 && MetricValue(metrics, series) != want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    metrics = Do(s, "GET", "/metrics").body;
  }
  return metrics;
}

// The text of one streamed greedy chat answer of up to max_tokens (the end token banned
// when ban_eos, so it runs its length).
std::string StreamChat(const ServerProcess& s, const std::string& prompt, int max_tokens, bool ban_eos = false) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(120);
  std::string raw;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  json body = {{"messages", json::array({{{"role", "user"}, {"content", prompt}}})},
               {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", true}};
  if (ban_eos) body["logit_bias"] = {{"2", -100}};
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    raw.append(d, n);
    return true;
  };
  c.send(req);
  return ParseStream(raw, true).text;
}

TEST(ServerHttpTest, GreedyAnswersEqualRunWithExactUsage) {
  ServerProcess s(Args({"-np", "4"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  EXPECT_NE(s.Log().find("listening on http://127.0.0.1:"), std::string::npos) << s.Log();  // loopback by default
  Reply h = Do(s, "GET", "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.j, (json{{"status", "ok"}}));
  Reply m = Do(s, "GET", "/v1/models");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(m.j["object"], "list");
  EXPECT_EQ(m.j["data"][0]["id"], "stories260K");
  Reply one = Do(s, "GET", "/v1/models/stories260K");
  EXPECT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.j["id"], "stories260K");
  ExpectOpenAiError(Do(s, "GET", "/v1/models/gpt-4"), 404, "unknown model id");

  // Completions: the prompt as `tierlm run -p` takes it.
  const std::string prompt = "Once upon a time";
  Reply c = Do(s, "POST", "/v1/completions",
               json{{"model", "stories260K"}, {"prompt", prompt}, {"max_tokens", 30}, {"temperature", 0}}.dump());
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.j["object"], "text_completion");
  EXPECT_EQ(c.j["choices"][0]["text"], RunGreedy(prompt, 30));
  Reply t = Do(s, "POST", "/tokenize", json{{"content", prompt}, {"add_special", true}}.dump());
  ASSERT_EQ(t.status, 200) << t.body;
  EXPECT_EQ(c.j["usage"]["prompt_tokens"], t.j["tokens"].size());
  const int64_t ids = CountIds(RunGreedy(prompt, 30, /*token_ids=*/true));
  const bool stopped = c.j["choices"][0]["finish_reason"] == "stop";
  EXPECT_EQ(c.j["usage"]["completion_tokens"], ids + (stopped ? 1 : 0));  // the end token counts
  EXPECT_EQ(c.j["usage"]["total_tokens"], c.j["usage"]["prompt_tokens"].get<int64_t>() + ids + (stopped ? 1 : 0));
  EXPECT_EQ(c.j["choices"][0]["finish_reason"], ids == 30 ? "length" : "stop");

  // Chat: the model has no template, so chatml; `tierlm run` on the same formatted text.
  const std::vector<ChatMessage> msgs = {{"system", "You tell stories."}, {"user", "Tell me about a cat."}};
  const std::string chat_prompt = FormatChat(ChatTemplate::kChatml, msgs, true);
  Reply ch = Do(s, "POST", "/v1/chat/completions",
                json{{"messages", json::array({{{"role", "system"}, {"content", msgs[0].content}},
                                               {{"role", "user"}, {"content", msgs[1].content}}})},
                     {"max_tokens", 25},
                     {"temperature", 0}}
                    .dump());
  ASSERT_EQ(ch.status, 200) << ch.body;
  EXPECT_EQ(ch.j["object"], "chat.completion");
  EXPECT_EQ(ch.j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(ch.j["choices"][0]["message"]["content"], RunGreedy(chat_prompt, 25));
  Reply ct = Do(s, "POST", "/tokenize", json{{"content", chat_prompt}, {"add_special", true}}.dump());
  EXPECT_EQ(ch.j["usage"]["prompt_tokens"], ct.j["tokens"].size());

  // Detokenize inverts tokenize.
  Reply plain = Do(s, "POST", "/tokenize", json{{"content", prompt}}.dump());
  Reply back = Do(s, "POST", "/detokenize", json{{"tokens", plain.j["tokens"]}}.dump());
  EXPECT_EQ(back.j["content"], prompt);
  // Logprobs: one entry per completion token, the chosen token first among the top ones.
  Reply lp = Do(s, "POST", "/v1/chat/completions",
                json{{"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
                     {"max_tokens", 5}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 3}}.dump());
  ASSERT_EQ(lp.status, 200) << lp.body;
  const json& content = lp.j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), lp.j["usage"]["completion_tokens"].get<size_t>());
  for (const json& e : content) {
    ASSERT_EQ(e["top_logprobs"].size(), 3u);
    EXPECT_EQ(e["top_logprobs"][0]["logprob"], e["logprob"]);  // greedy takes the most likely
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
  }
  // The counters add up the usage of the three generations exactly. The gauges are
  // published by the scheduler's next step, which may come just after the last reply.
  std::string metrics = Do(s, "GET", "/metrics").body;
  for (int i = 0; i < 100 && MetricValue(metrics, "tierlm_requests_running") != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    metrics = Do(s, "GET", "/metrics").body;
  }
  int64_t prompt_sum = 0, completion_sum = 0;
  for (const Reply* r : {&c, &ch, &lp}) {
    prompt_sum += r->j["usage"]["prompt_tokens"].get<int64_t>();
    completion_sum += r->j["usage"]["completion_tokens"].get<int64_t>();
  }
  EXPECT_EQ(MetricValue(metrics, "tierlm_prompt_tokens_total"), prompt_sum) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_generation_tokens_total"), completion_sum) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_time_to_first_token_seconds_count"), 3) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_inter_token_latency_seconds_count"), completion_sum - 3) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_finished_total{outcome=\"ok\"}"), 3) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_running"), 0) << metrics;
}

TEST(ServerHttpTest, SseIsFramedAsOpenAiStreamsIt) {
  ServerProcess s(Args({"-np", "2"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  const json msgs = json::array({{{"role", "user"}, {"content", "Tell me a story."}}});
  Reply whole = Do(s, "POST", "/v1/chat/completions", json{{"messages", msgs}, {"max_tokens", 20}, {"temperature", 0}}.dump());
  ASSERT_EQ(whole.status, 200) << whole.body;

  const std::string raw = Curl(s, "/v1/chat/completions",
                               json{{"messages", msgs}, {"max_tokens", 20}, {"temperature", 0}, {"stream", true},
                                    {"stream_options", {{"include_usage", true}}}});
  ASSERT_GE(raw.size(), 14u);
  EXPECT_EQ(raw.substr(raw.size() - 14), "data: [DONE]\n\n");
  Streamed st = ParseStream(raw, true);
  EXPECT_TRUE(st.done);
  ASSERT_GE(st.chunks.size(), 3u);
  EXPECT_EQ(st.text, whole.j["choices"][0]["message"]["content"]);
  const std::string id = st.chunks[0]["id"];
  for (const json& c : st.chunks) {
    EXPECT_EQ(c["id"], id);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_TRUE(c.contains("usage"));  // null on all but the last (include_usage)
  }
  EXPECT_EQ(st.chunks[0]["choices"][0]["delta"]["role"], "assistant");
  for (size_t i = 1; i < st.chunks.size(); ++i) EXPECT_FALSE(st.chunks[i]["choices"].size() == 1 &&
                                                             st.chunks[i]["choices"][0]["delta"].contains("role"));
  // finish_reason only on the last choice chunk; then the usage chunk with no choices.
  const json& usage_chunk = st.chunks.back();
  EXPECT_EQ(usage_chunk["choices"], json::array());
  // The same counts as the whole answer; the stream came second, so its prompt was reused
  // from the first one's blocks (all full blocks but the one with the last token).
  json streamed_usage = usage_chunk["usage"], whole_usage = whole.j["usage"];
  EXPECT_EQ(whole_usage["prompt_tokens_details"]["cached_tokens"], 0);
  const int64_t n_prompt = whole_usage["prompt_tokens"].get<int64_t>();
  EXPECT_EQ(streamed_usage["prompt_tokens_details"]["cached_tokens"], (n_prompt - 1) / 16 * 16);
  streamed_usage.erase("prompt_tokens_details");
  whole_usage.erase("prompt_tokens_details");
  EXPECT_EQ(streamed_usage, whole_usage);
  const json& last = st.chunks[st.chunks.size() - 2];
  EXPECT_EQ(last["choices"][0]["finish_reason"], whole.j["choices"][0]["finish_reason"]);
  for (size_t i = 0; i + 2 < st.chunks.size(); ++i) {
    EXPECT_TRUE(st.chunks[i]["choices"][0]["finish_reason"].is_null()) << i;
    EXPECT_TRUE(st.chunks[i]["usage"].is_null()) << i;
  }

  // Without include_usage there is no usage anywhere; completions stream the same text.
  Reply cw = Do(s, "POST", "/v1/completions", json{{"prompt", "The cat"}, {"max_tokens", 20}, {"temperature", 0}}.dump());
  const std::string craw = Curl(s, "/v1/completions",
                                json{{"prompt", "The cat"}, {"max_tokens", 20}, {"temperature", 0}, {"stream", true}});
  Streamed cs = ParseStream(craw, false);
  EXPECT_TRUE(cs.done);
  EXPECT_EQ(cs.text, cw.j["choices"][0]["text"]);
  for (const json& c : cs.chunks) {
    EXPECT_FALSE(c.contains("usage"));
    EXPECT_EQ(c["object"], "text_completion");
  }
  EXPECT_EQ(cs.chunks.back()["choices"][0]["finish_reason"], cw.j["choices"][0]["finish_reason"]);

  // n = 2 streams two choices, each with its role chunk and its finish.
  const std::string nraw = Curl(s, "/v1/chat/completions",
                                json{{"messages", msgs}, {"max_tokens", 8}, {"temperature", 0}, {"n", 2}, {"stream", true}});
  Streamed ns = ParseStream(nraw, true);
  int roles = 0, finishes = 0;
  std::string text0, text1;
  for (const json& c : ns.chunks)
    for (const json& ch : c["choices"]) {
      roles += ch["delta"].contains("role");
      finishes += !ch["finish_reason"].is_null();
      if (ch["delta"].contains("content")) (ch["index"] == 0 ? text0 : text1) += ch["delta"]["content"].get<std::string>();
    }
  EXPECT_EQ(roles, 2);
  EXPECT_EQ(finishes, 2);
  EXPECT_EQ(text0, text1);  // greedy: both choices are the same
}

TEST(ServerHttpTest, ErrorsAreOpenAiShapedWithTheRightStatus) {
  ServerProcess s(Args({"-np", "2", "--max-body", "4096", "--max-messages", "3", "--max-n", "2"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  const json user = {{"role", "user"}, {"content", "Hi"}};
  ExpectOpenAiError(Do(s, "GET", "/v1/nothing"), 404, "unknown route");
  ExpectOpenAiError(Do(s, "POST", "/v1/chat/completions", json{{"model", "gpt-4"}, {"messages", {user}}}.dump()), 404,
                    "unknown model");
  ExpectOpenAiError(Do(s, "POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"cont"), 400,
                    "truncated JSON");
  ExpectOpenAiError(Do(s, "POST", "/v1/chat/completions", "hello"), 400, "not JSON");
  ExpectOpenAiError(Do(s, "POST", "/v1/chat/completions", json{{"messages", {user}}, {"temperature", "hot"}}.dump()),
                    400, "wrong type");
  ExpectOpenAiError(Do(s, "POST", "/v1/chat/completions", json{{"messages", {user}}, {"n", 3}}.dump()), 400, "n");
  ExpectOpenAiError(Do(s, "POST", "/v1/chat/completions",
                       json{{"messages", {user}}, {"logprobs", true}, {"top_logprobs", 50}}.dump()),
                    400, "top_logprobs");
  ExpectOpenAiError(Do(s, "POST", "/v1/chat/completions", json{{"messages", {user, user, user, user}}}.dump()), 400,
                    "messages");
  ExpectOpenAiError(Do(s, "POST", "/v1/completions", json{{"prompt", std::string(5000, 'a')}}.dump()), 413,
                    "body too large");
  // 3000 bytes of text is well over 256 tokens of context.
  std::string words;
  for (int i = 0; i < 600; ++i) words += "cat ";
  Reply too_long = Do(s, "POST", "/v1/completions", json{{"prompt", words.substr(0, 3000)}}.dump());
  ExpectOpenAiError(too_long, 400, "prompt over the context");
  EXPECT_EQ(too_long.j["error"]["code"], "context_length_exceeded");
  ExpectOpenAiError(Do(s, "POST", "/v1/completions", json{{"prompt", {1, 2, 99999}}}.dump()), 400, "bad token id");
  ExpectOpenAiError(Do(s, "POST", "/detokenize", json{{"tokens", {-1}}}.dump()), 400, "bad detokenize id");
  // The server is still fine after all that.
  Reply ok = Do(s, "POST", "/v1/chat/completions", json{{"messages", {user}}, {"max_tokens", 3}}.dump());
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST(ServerHttpTest, ApiKeyCorsQueueAndConnectionLimits) {
  {
    ServerProcess s(Args({"--api-key", "sekret", "--cors-origin", "http://ui.example"}));
    ASSERT_TRUE(s.ok()) << s.Log();
    EXPECT_EQ(Do(s, "GET", "/health").status, 200);  // open without a key
    ExpectOpenAiError(Do(s, "GET", "/v1/models"), 401, "no key");
    ExpectOpenAiError(Do(s, "GET", "/v1/models", "", {{"Authorization", "Bearer wrong"}}), 401, "wrong key");
    ExpectOpenAiError(Do(s, "POST", "/v1/completions", json{{"prompt", "x"}}.dump()), 401, "no key on a POST");
    Reply good = Do(s, "GET", "/v1/models", "", {{"Authorization", "Bearer sekret"}});
    EXPECT_EQ(good.status, 200);
    EXPECT_EQ(Header(good, "Access-Control-Allow-Origin"), "http://ui.example");
    Reply pre = Do(s, "OPTIONS", "/v1/chat/completions", "", {{"Origin", "http://ui.example"}});
    EXPECT_EQ(pre.status, 204);
    EXPECT_NE(Header(pre, "Access-Control-Allow-Headers"), "");
  }
  {
    // No CORS unless asked; a queue of 0 refuses every generation with 503.
    ServerProcess s(Args({"--max-queue", "0"}));
    ASSERT_TRUE(s.ok()) << s.Log();
    Reply m = Do(s, "GET", "/v1/models");
    EXPECT_EQ(m.status, 200);
    EXPECT_FALSE(m.headers.count("Access-Control-Allow-Origin"));
    Reply busy = Do(s, "POST", "/v1/completions", json{{"prompt", "x"}}.dump());
    ExpectOpenAiError(busy, 503, "queue full");
    EXPECT_EQ(busy.j["error"]["code"], "overloaded");
  }
  {
    // One connection at a time: a second one is answered 503 while a stream holds the first;
    // /health still answers.
    ServerProcess s(Args({"--max-connections", "1", "-np", "1", "-c", "16384"}));
    ASSERT_TRUE(s.ok()) << s.Log();
    std::atomic<bool> streaming{false}, stop{false};
    std::thread holder([&] {
      httplib::Client c("127.0.0.1", s.port());
      c.set_read_timeout(60);
      const json body = {{"prompt", "Once"}, {"max_tokens", 16000}, {"stream", true}, {"logit_bias", {{"2", -100}}}};
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = body.dump();
      req.set_header("Content-Type", "application/json");
      req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
        streaming = true;
        return !stop.load();
      };
      c.send(req);
    });
    for (int i = 0; i < 500 && !streaming; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(streaming);
    Reply second = Do(s, "GET", "/v1/models");
    ExpectOpenAiError(second, 503, "too many connections");
    EXPECT_EQ(Do(s, "GET", "/health").status, 200);
    stop = true;
    holder.join();
  }
}

TEST(ServerHttpTest, ClientThatLeavesMidStreamIsCancelledAndItsBlocksFreed) {
  ServerProcess s(Args({"-c", "16384", "-np", "1"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(60);
  // Banned end token and a long budget: only the disconnect can end it early.
  const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 16000}, {"stream", true},
                     {"logit_bias", {{"2", -100}}}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  c.send(req);  // the receiver's false closes the connection
  EXPECT_EQ(chunks, 3);
  const std::string metrics = MetricsOnce(s, "tierlm_requests_running", 0);
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_running"), 0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_kv_blocks_used"), 0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_finished_total{outcome=\"error\"}"), 1) << metrics;  // cancelled
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_finished_total{outcome=\"ok\"}"), 0) << metrics;
  EXPECT_LT(MetricValue(metrics, "tierlm_generation_tokens_total"), 16000) << metrics;
  EXPECT_GT(MetricValue(metrics, "tierlm_kv_blocks_total"), 0);
  EXPECT_GE(MetricValue(metrics, "tierlm_time_to_first_token_seconds_count"), 1);
  // The server goes on.
  EXPECT_EQ(Do(s, "POST", "/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 4}}.dump()).status, 200);
}

// A client that leaves while a whole (not streamed) answer is being computed: the server
// sees its socket close, cancels the request and frees its blocks long before its
// 16,000 tokens; the server goes on.
TEST(ServerHttpTest, ANonStreamedClientThatLeavesIsCancelledToo) {
  ServerProcess s(Args({"-c", "16384", "-np", "1"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(s.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string body =
      json{{"prompt", "Once upon a time"}, {"max_tokens", 16000}, {"logit_bias", {{"2", -100}}}}.dump();
  const std::string http = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(send(fd, http.data(), http.size(), 0), static_cast<ssize_t>(http.size()));
  std::string metrics = MetricsOnce(s, "tierlm_requests_running", 1);
  ASSERT_EQ(MetricValue(metrics, "tierlm_requests_running"), 1) << metrics;
  close(fd);  // gone, without reading a byte
  metrics = MetricsOnce(s, "tierlm_requests_running", 0);
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_running"), 0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_kv_blocks_used"), 0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_finished_total{outcome=\"error\"}"), 1) << metrics;  // cancelled
  EXPECT_LT(MetricValue(metrics, "tierlm_generation_tokens_total"), 16000) << metrics;
  EXPECT_EQ(Do(s, "POST", "/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 4}}.dump()).status, 200);
}

TEST(ServerHttpTest, SixteenConcurrentStreamsEqualEachAloneAndHealthAnswers) {
  ServerProcess s(Args({"-np", "16", "-c", "4096", "-b", "64"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  const char* prompts[16] = {"Once upon a time", "The little dog", "Lily went to the park", "Tom had a red ball",
                             "One day, a bird", "The sun was", "Sara and Ben", "There was a big tree", "Mom said",
                             "The cat sat", "A boy named Tim", "In the forest", "The girl smiled",
                             "It was a cold night", "The king", "Max found a box"};
  auto stream_one = [&](const std::string& prompt) { return StreamChat(s, prompt, 40); };
  std::vector<std::string> alone;
  for (const char* p : prompts) alone.push_back(stream_one(p));
  std::vector<std::string> together(16);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 16; ++i) threads.emplace_back([&, i] { together[i] = stream_one(prompts[i]); });
  int health_ok = 0;
  for (int i = 0; i < 5; ++i) health_ok += Do(s, "GET", "/health").status == 200;
  for (auto& t : threads) t.join();
  EXPECT_EQ(health_ok, 5);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_FALSE(alone[i].empty()) << prompts[i];
    EXPECT_EQ(together[i], alone[i]) << prompts[i];
  }
}

// --kv-unified: 8 concurrent streams in a cache that holds about three of them at once are
// preempted and recomputed, and each still streams what it streams alone.
TEST(ServerHttpTest, UnifiedKvPreemptsUnderPressureAndTheStreamsAreUnchanged) {
  const char* prompts[8] = {"Once upon a time", "The little dog", "Lily went to the park", "Tom had a red ball",
                            "One day, a bird", "The sun was", "Sara and Ben", "There was a big tree"};
  auto stream_one = [&](const ServerProcess& s, const std::string& prompt) { return StreamChat(s, prompt, 60, true); };
  std::vector<std::string> alone;
  {
    ServerProcess s(Args({"-np", "1", "-c", "256"}));
    ASSERT_TRUE(s.ok()) << s.Log();
    for (const char* p : prompts) alone.push_back(stream_one(s, p));
  }
  ServerProcess s(Args({"-np", "8", "-c", "256", "-b", "64", "--kv-unified", "--no-prefix-cache"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  EXPECT_NE(s.Log().find("unified KV"), std::string::npos) << s.Log();
  std::vector<std::string> together(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 8; ++i) threads.emplace_back([&, i] { together[i] = stream_one(s, prompts[i]); });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_FALSE(alone[i].empty()) << prompts[i];
    EXPECT_EQ(together[i], alone[i]) << prompts[i];
  }
  const std::string metrics = MetricsOnce(s, "tierlm_requests_running", 0);
  EXPECT_GT(MetricValue(metrics, "tierlm_requests_preempted_total"), 0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_running"), 0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_kv_blocks_used"), 0) << metrics;
}

// --kv-evict in serve: each request's KV stays within its bound while it runs past it,
// and four at once (a prompt longer than a step's token budget among them) give exactly
// what `tierlm run` gives with the same bound, for a positional and an attention-scored
// policy. Combinations that cannot be exact are refused.
TEST(ServerHttpTest, KvEvictBoundsEachRequestAndEqualsRunWithTheSameBound) {
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She loved to play in the park with her friends. One day, "
      "she saw a big red ball under a tree. She ran to the ball and picked it up. Her friend Tom came and said, can I "
      "play with the ball too? Lily said yes and they played together all day. When the sun went down, they went home "
      "happy.";
  const std::vector<std::string> prompts = {story, "The little dog", story, "Tom had a red ball"};
  for (const char* policy : {"streaming", "h2o"}) {
    const std::string flags = std::string("-c 1024 --kv-evict ") + policy + " --kv-max-tokens 96";
    std::vector<std::string> want;
    for (const auto& p : prompts) want.push_back(RunGreedy(p, 120, false, flags));
    // 4 slots of 1024 positions (run's -c), in a cache sized for the bound, not for 4 x 1024.
    ServerProcess s(Args({"-np", "4", "-c", "4096", "-b", "64", "--kv-evict", policy, "--kv-max-tokens", "96"}));
    ASSERT_TRUE(s.ok()) << s.Log();
    EXPECT_NE(s.Log().find("KV bounded by --kv-evict"), std::string::npos) << s.Log();
    std::vector<Reply> got(prompts.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < prompts.size(); ++i)
      threads.emplace_back([&, i] {
        got[i] = Do(s, "POST", "/v1/completions",
                    json{{"prompt", prompts[i]}, {"max_tokens", 120}, {"temperature", 0}}.dump());
      });
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_EQ(got[i].status, 200) << got[i].body;
      EXPECT_EQ(got[i].j["choices"][0]["text"], want[i]) << policy << ": " << prompts[i].substr(0, 20);
    }
    // The bound holds: -np 4 sequences of (96 + one prompt chunk + 1 block) positions are the whole cache.
    const std::string metrics = MetricsOnce(s, "tierlm_kv_blocks_used", 0);
    EXPECT_EQ(MetricValue(metrics, "tierlm_kv_blocks_total"), 4 * (96 / 16 + 256 / 16 + 1)) << metrics;
    EXPECT_EQ(MetricValue(metrics, "tierlm_kv_blocks_used"), 0) << metrics;
    EXPECT_EQ(Do(s, "POST", "/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 2}, {"n", 2}}.dump()).status, 400);
  }
  const std::string bin = testing::Quote(testing::TierlmBinary()) + " serve -m " + testing::Quote(Model()) + " -q --port 0 ";
  for (const char* flags : {"--kv-evict h2o --kv-max-tokens 96 --kv-unified",
                            "--kv-evict h2o --kv-max-tokens 96 --prefix-cache-dir /tmp/tierlm-nope",
                            "--kv-evict h2o", "--kv-max-tokens 96"}) {
    auto r = testing::RunShell("timeout 30 " + bin + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_NE(r.output.find("error: "), std::string::npos) << flags << ": " << r.output;
  }
}

TEST(ServerHttpTest, HealthIs503UntilTheModelIsLoaded) {
  // The HTTP layer in this process, before a backend is set: what a loading server answers.
  server::Metrics metrics;
  server::HttpOptions o;
  o.port = 0;
  server::HttpServer http(o, &metrics);
  ASSERT_TRUE(http.Bind().ok());
  std::thread io([&] { http.Serve(); });
  httplib::Client c("127.0.0.1", http.port());
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503);
  EXPECT_NE(h->body.find("loading"), std::string::npos) << h->body;
  auto m = c.Post("/v1/chat/completions", "{}", "application/json");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 503);
  EXPECT_NE(m->body.find("\"error\""), std::string::npos) << m->body;
  auto metrics_page = c.Get("/metrics");  // metrics answer while loading
  ASSERT_TRUE(metrics_page);
  EXPECT_EQ(metrics_page->status, 200);
  http.Stop();
  io.join();
}

TEST(ServerHttpTest, AModelThatCannotLoadEndsTheServerAndSigtermStopsIt) {
  // A model that cannot load: the server binds first, then reports the error and exits 2.
  ServerProcess bad({"-m", (testing::SourceDir() / "README.md").string()}, /*timeout_s=*/10);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.Log().find("listening on"), std::string::npos) << bad.Log();
  EXPECT_NE(bad.Log().find("error:"), std::string::npos) << bad.Log();
  EXPECT_EQ(bad.Stop(), 2) << bad.Log();
  ServerProcess s(Args({"-np", "1", "-c", "16384"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  // A stream in flight when SIGTERM comes: the server ends it and exits at once.
  std::atomic<bool> streaming{false};
  std::string raw;
  std::thread client([&] {
    httplib::Client c("127.0.0.1", s.port());
    c.set_read_timeout(60);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", "Once"}, {"max_tokens", 16000}, {"stream", true}, {"logit_bias", {{"2", -100}}}}.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
      raw.append(d, n);
      streaming = true;
      return true;
    };
    c.send(req);
  });
  for (int i = 0; i < 500 && !streaming; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(streaming);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(s.Stop(), 0) << s.Log();  // SIGTERM: a clean stop, not the SIGKILL after 10 s
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5);
  client.join();
  EXPECT_NE(raw.find("shutting down"), std::string::npos) << raw.substr(raw.size() > 300 ? raw.size() - 300 : 0);
}

TEST(ServerHttpTest, OddServeFlagsExit2WithAnError) {
  const std::string bin = testing::Quote(testing::TierlmBinary()) + " serve -m " + testing::Quote(Model()) + " -q ";
  for (const char* flags : {"--port 70000", "--port -1", "-np 0", "-np 99999999999999999999", "--max-body 0",
                            "--timeout nan", "--timeout 0", "--max-connections 0", "--max-n 0", "-c 3 -np 16 --port 0",
                            "--chat-template nope", "--host", "--mem-budget 1K --port 0", "-ctk q9"}) {
    auto r = testing::RunShell("timeout 30 " + bin + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_NE(r.output.find("error: "), std::string::npos) << flags << ": " << r.output;
  }
}

TEST(ServerHttpTest, UnderAMemBudgetWithStreamingWeightsTheAnswersAreTheSame) {
  // 9.5 MiB is just above the smallest budget for stories260K: most weights stream from the file.
  const json body = {{"messages", json::array({{{"role", "user"}, {"content", "Tell me a story."}}})},
                     {"max_tokens", 30}, {"temperature", 0}, {"n", 2}};
  std::string in_memory, streamed;
  {
    ServerProcess s(Args({"-np", "4", "-c", "256"}));
    ASSERT_TRUE(s.ok()) << s.Log();
    Reply r = Do(s, "POST", "/v1/chat/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    json usage = r.j["usage"];
    usage["prompt_tokens_details"]["cached_tokens"] = 0;  // see below
    in_memory = r.j["choices"].dump() + usage.dump();
    EXPECT_EQ(MetricValue(Do(s, "GET", "/metrics").body, "tierlm_weight_disk_read_bytes_total"), 0);
  }
  {
    ServerProcess s(Args({"-np", "4", "-c", "256", "--mem-budget", "9.5M"}));
    ASSERT_TRUE(s.ok()) << s.Log();
    EXPECT_NE(s.Log().find("streaming ring"), std::string::npos) << s.Log();  // weights do stream
    std::vector<std::thread> others;
    std::vector<int> statuses(3, 0);
    for (int i = 0; i < 3; ++i)  // company in the batch
      others.emplace_back([&, i] { statuses[static_cast<size_t>(i)] = Do(s, "POST", "/v1/chat/completions", body.dump()).status; });
    Reply r = Do(s, "POST", "/v1/chat/completions", body.dump());
    for (auto& t : others) t.join();
    ASSERT_EQ(r.status, 200) << r.body;
    // How much of the prompt came from the prefix cache depends on which of the four identical requests
    // ran first; the answer and the token counts must not.
    json usage = r.j["usage"];
    EXPECT_LE(usage["prompt_tokens_details"]["cached_tokens"].get<int>(), usage["prompt_tokens"].get<int>());
    usage["prompt_tokens_details"]["cached_tokens"] = 0;
    streamed = r.j["choices"].dump() + usage.dump();
    for (int st : statuses) EXPECT_EQ(st, 200);
    const std::string metrics = Do(s, "GET", "/metrics").body;
    EXPECT_GT(MetricValue(metrics, "tierlm_weight_disk_read_bytes_total"), 0) << metrics;
    EXPECT_GT(MetricValue(metrics, "tierlm_weight_disk_reads_total"), 0) << metrics;
  }
  EXPECT_EQ(streamed, in_memory);
}

TEST(ServerHttpTest, ARequestPastItsTimeoutIsCutOffWith504) {
  ServerProcess s(Args({"-np", "1", "-c", "16384", "--timeout", "0.3"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  const auto t0 = std::chrono::steady_clock::now();
  Reply r = Do(s, "POST", "/v1/completions",
               json{{"prompt", "Once"}, {"max_tokens", 16000}, {"logit_bias", {{"2", -100}}}}.dump());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ExpectOpenAiError(r, 504, "timeout");
  EXPECT_LT(seconds, 30);
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = Do(s, "GET", "/metrics").body;
    if (MetricValue(metrics, "tierlm_kv_blocks_used") == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(MetricValue(metrics, "tierlm_kv_blocks_used"), 0) << metrics;
}

TEST(ServerHttpTest, PlanNpShowsHowServeDividesTheContext) {
  const std::string plan = testing::Quote(testing::TierlmBinary()) + " plan -m " + testing::Quote(Model()) +
                           " --no-measure --mem-budget 20M -c 4096 ";
  auto r = testing::RunShell(plan + "-np 16");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("serve -np 16: 16 slots of 256 positions each"), std::string::npos) << r.output;
  auto odd = testing::RunShell(plan + "-np 13");  // 4096 / 13 = 315, in whole blocks of 16: 304
  EXPECT_NE(odd.output.find("13 slots of 304 positions"), std::string::npos) << odd.output;
  auto bad = testing::RunShell(plan + "-np 2000");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  // The server divides the same way: with -c 64 -np 4 a request has 16 positions.
  ServerProcess s(Args({"-c", "64", "-np", "4"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  EXPECT_NE(s.Log().find("4 slots of 16 tokens"), std::string::npos) << s.Log();
  Reply c = Do(s, "POST", "/v1/completions",
               json{{"prompt", "Once upon a time"}, {"max_tokens", 100}, {"logit_bias", {{"2", -100}}}}.dump());
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c.j["usage"]["total_tokens"], 16 + 1);  // the last token is sampled, not fed
}

// A burst of clients overflowed httplib's listen backlog of 5 (connections reset before they
// were read) until the server raised it.
TEST(ServerHttpTest, SixtyClientsBeyondEveryLimitGet200Or503AndNoneHangs) {
  ServerProcess s(Args({"-np", "2", "--max-connections", "6", "--max-queue", "3"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  std::vector<int> status(60, 0);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < status.size(); ++i)
    clients.emplace_back([&, i] {
      const bool stream = i % 2 == 1;
      const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"stream", stream}};
      httplib::Client c("127.0.0.1", s.port());
      c.set_read_timeout(60);
      auto r = c.Post("/v1/completions", body.dump(), "application/json");
      status[i] = r ? r->status : -100 - static_cast<int>(r.error());  // -104: a read error (reset)
    });
  for (auto& t : clients) t.join();
  int ok = 0, busy = 0;
  for (int st : status) {
    EXPECT_TRUE(st == 200 || st == 503) << st;
    ok += st == 200;
    busy += st == 503;
  }
  EXPECT_GT(ok, 0);
  EXPECT_EQ(ok + busy, 60);
  EXPECT_EQ(Do(s, "GET", "/health").status, 200);
  EXPECT_EQ(Do(s, "POST", "/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 2}}.dump()).status, 200);
  EXPECT_EQ(s.Stop(), 0) << s.Log();
}

// bench/serve_bench against the server: every request succeeds and its token counts add up
// to the server's (a request may end early at the end token: the count is its usage).
TEST(ServerHttpTest, ServeBenchCountsEveryRequestAndToken) {
  ServerProcess s(Args({"-np", "4"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  auto r = testing::RunShell(testing::Quote(TIERLM_SERVE_BENCH) + " --url " + s.url() +
                                 " --clients 1,3 --requests 2 -n 6 --json",
                             /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json rows = json::parse(r.output, nullptr, false);
  ASSERT_TRUE(rows.is_array()) << r.output;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["clients"], 1);
  EXPECT_EQ(rows[0]["requests"], 2);
  EXPECT_EQ(rows[1]["clients"], 3);
  EXPECT_EQ(rows[1]["requests"], 6);
  std::string metrics = Do(s, "GET", "/metrics").body;
  int64_t tokens = 0;
  for (const json& row : rows) {
    EXPECT_EQ(row["failed"], 0);
    EXPECT_GT(row["tokens"].get<int64_t>(), 0);
    EXPECT_LE(row["tokens"].get<int64_t>(), 6 * row["requests"].get<int64_t>());
    tokens += row["tokens"].get<int64_t>();
  }
  EXPECT_EQ(MetricValue(metrics, "tierlm_generation_tokens_total"), tokens) << metrics;
  EXPECT_EQ(MetricValue(metrics, "tierlm_requests_finished_total{outcome=\"ok\"}"), 8) << metrics;
}

}  // namespace
}  // namespace tierlm
