// The official `openai` npm package (6.x; 7.x needs Node 22) as the client of tierlm serve.
// The test installs it with npm into the build folder (once; a later run reuses it): if npm
// cannot fetch it, the test fails. Greedy answers must equal `tierlm run` on the same
// prompt and template; usage counts must be exact.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "runtime/chat_template.h"
#include "server_process.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string Model() { return testing::StoriesModel().string(); }

// `tierlm run` greedy: the text, and the number of tokens it printed (--token-ids).
std::pair<std::string, int64_t> RunGreedy(const std::string& prompt, int n) {
  const auto dir = testing::ScratchDir("openai-run");
  const std::string file = (dir / "prompt.txt").string();
  std::ofstream(file, std::ios::binary) << prompt;
  const std::string cmd = "TIERLM_BATCH_INVARIANT=1 " + testing::Quote(testing::TierlmBinary()) + " run -m " +
                          testing::Quote(Model()) + " -f " + testing::Quote(file) + " -n " + std::to_string(n) +
                          " --temp 0 --no-display-prompt -q -t 2 -c 256";
  auto text = testing::RunShell(cmd, false);
  auto ids = testing::RunShell(cmd + " --token-ids", false);
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_EQ(ids.exit_code, 0) << ids.output;
  if (!text.output.empty() && text.output.back() == '\n') text.output.pop_back();
  int64_t count = 0;
  bool in = false;
  for (char ch : ids.output) {
    const bool digit = ch >= '0' && ch <= '9';
    if (digit && !in) ++count;
    in = digit;
  }
  return {text.output, count};
}

// Installs openai@6 under DataDir()/npm unless a 6.x is already there; the folder.
fs::path OpenAiPackage() {
  const fs::path dir = testing::DataDir() / "npm";
  const fs::path pkg = dir / "node_modules" / "openai" / "package.json";
  auto installed_major = [&]() -> std::string {
    std::ifstream in(pkg);
    if (!in) return "";
    json j = json::parse(in, nullptr, false);
    if (!j.is_object() || !j["version"].is_string()) return "";
    const std::string v = j["version"];
    return v.substr(0, v.find('.'));
  };
  if (installed_major() != "6") {
    fs::create_directories(dir);
    auto r = testing::RunShell("npm install --prefix " + testing::Quote(dir.string()) +
                               " --no-audit --no-fund --loglevel=error openai@6");
    EXPECT_EQ(r.exit_code, 0) << "npm could not install openai@6 (is the npm registry reachable?):\n" << r.output;
  }
  EXPECT_EQ(installed_major(), "6") << pkg;
  return dir;
}

TEST(ServerOpenAiClientTest, OfficialClientGetsRunsGreedyAnswersAndExactUsage) {
  auto node = testing::RunShell("node --version");
  ASSERT_EQ(node.exit_code, 0) << "node is needed for this test: " << node.output;
  ASSERT_GE(std::atoi(node.output.c_str() + 1), 20) << "openai 6.x needs Node 20 or later: " << node.output;
  const fs::path npm = OpenAiPackage();
  ASSERT_FALSE(HasFailure());
  // The script runs from the folder that holds node_modules, so that `import 'openai'` resolves.
  const fs::path script = npm / "openai_client.mjs";
  fs::copy_file(testing::SourceDir() / "tests" / "server" / "openai_client.mjs", script,
                fs::copy_options::overwrite_existing);

  testing::ServerProcess s({"-m", Model(), "-t", "2", "-c", "1024", "-np", "4", "--api-key", "test-key"});
  ASSERT_TRUE(s.ok()) << s.Log();
  auto r = testing::RunShell("node " + testing::Quote(script.string()) + " " + testing::Quote(s.url()) +
                                 " stories260K test-key",
                             /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << s.Log();
  const json out = json::parse(r.output, nullptr, false);
  ASSERT_TRUE(out.is_object()) << r.output;

  const std::vector<ChatMessage> msgs = {{"system", "You tell stories."}, {"user", "Tell me about a cat."}};
  const std::string chat_prompt = FormatChat(ChatTemplate::kChatml, msgs, true);
  const auto [chat_text, chat_n] = RunGreedy(chat_prompt, 32);
  const auto [comp_text, comp_n] = RunGreedy("Once upon a time", 32);
  auto tokens = [&](const std::string& text) {
    auto t = testing::RunShell("curl -s -H 'Authorization: Bearer test-key' " + testing::Quote(s.url() + "/tokenize") +
                               " -d " + testing::Quote(json{{"content", text}, {"add_special", true}}.dump()));
    json j = json::parse(t.output, nullptr, false);
    EXPECT_TRUE(j.is_object()) << t.output;
    return j.is_object() ? static_cast<int64_t>(j["tokens"].size()) : -1;
  };
  const int64_t chat_prompt_n = tokens(chat_prompt), comp_prompt_n = tokens("Once upon a time");
  auto completion_tokens = [](int64_t printed, const json& finish) {
    return printed + (finish == "stop" ? 1 : 0);  // the end token is generated and counted, not printed
  };

  const json& chat = out["chat"];
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["role"], "assistant");
  EXPECT_EQ(chat["content"], chat_text);
  EXPECT_EQ(chat["finish"], chat_n == 32 ? "length" : "stop");
  EXPECT_EQ(chat["usage"]["prompt_tokens"], chat_prompt_n);
  EXPECT_EQ(chat["usage"]["completion_tokens"], completion_tokens(chat_n, chat["finish"]));
  EXPECT_EQ(chat["usage"]["total_tokens"], chat_prompt_n + completion_tokens(chat_n, chat["finish"]));

  const json& cs = out["chat_stream"];
  EXPECT_EQ(cs["text"], chat_text);
  EXPECT_EQ(cs["roles"], json::array({"assistant"}));
  EXPECT_EQ(cs["finishes"], json::array({chat["finish"]}));
  // Asked second, the stream's prompt comes from the first answer's blocks.
  EXPECT_EQ(cs["usage"]["prompt_tokens"], chat["usage"]["prompt_tokens"]);
  EXPECT_EQ(cs["usage"]["completion_tokens"], chat["usage"]["completion_tokens"]);
  EXPECT_EQ(cs["usage"]["total_tokens"], chat["usage"]["total_tokens"]);
  EXPECT_EQ(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(cs["usage"]["prompt_tokens_details"]["cached_tokens"], (chat_prompt_n - 1) / 16 * 16);
  EXPECT_EQ(cs["ids"], 1);

  const json& comp = out["completion"];
  EXPECT_EQ(comp["object"], "text_completion");
  EXPECT_EQ(comp["text"], comp_text);
  EXPECT_EQ(comp["finish"], comp_n == 32 ? "length" : "stop");
  EXPECT_EQ(comp["usage"]["prompt_tokens"], comp_prompt_n);
  EXPECT_EQ(comp["usage"]["completion_tokens"], completion_tokens(comp_n, comp["finish"]));

  const json& ps = out["completion_stream"];
  EXPECT_EQ(ps["text"], comp_text);
  EXPECT_EQ(ps["finishes"], json::array({comp["finish"]}));
  EXPECT_EQ(ps["usage"], comp["usage"]);
  EXPECT_EQ(ps["ids"], 1);

  EXPECT_EQ(out["error"]["name"], "NotFoundError") << out.dump();
  EXPECT_EQ(out["error"]["status"], 404);
  EXPECT_EQ(out["error"]["code"], "model_not_found");
  EXPECT_EQ(out["auth_error"]["name"], "AuthenticationError") << out.dump();
  EXPECT_EQ(out["auth_error"]["status"], 401);
  EXPECT_EQ(out["models"], json::array({"stories260K"}));
}

}  // namespace
}  // namespace tierlm
