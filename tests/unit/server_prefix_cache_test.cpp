// The prefix cache end to end: `tierlm serve` processes over HTTP with the trained
// stories260K. A restarted server answers a repeated long prompt from its disk tier, two
// servers share prefixes through a real redis-server, damaged or full disks and a vanished
// Redis end in misses (never a failed request, never other output), other models, KV
// types and cache salts never hit, and the directory stays within its bound under churn.
// Every answer is compared with the same request to a server with no prefix cache.
#include <httplib.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "redis_process.h"
#include "server_process.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using nlohmann::json;
using testing::ServerProcess;
namespace fs = std::filesystem;

std::string Stories() { return testing::StoriesModel().string(); }

std::vector<std::string> Args(const std::string& model, std::vector<std::string> extra) {
  std::vector<std::string> a = {"-m", model, "-t", "2", "-c", "4096", "-np", "1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// A prompt of n token ids from the model's vocabulary (stories260K: 512), BOS first.
std::vector<int32_t> Prompt(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(static_cast<size_t>(n));
  p[0] = 1;
  for (int i = 1; i < n; ++i) p[static_cast<size_t>(i)] = 3 + static_cast<int32_t>(rng() % 500);
  return p;
}

struct Answer {
  int status = -1;
  std::string text;
  int64_t prompt_tokens = -1;
  int64_t cached_tokens = -1;
  std::string body;
};

Answer Complete(const ServerProcess& s, const std::vector<int32_t>& prompt, const std::string& salt = "",
                int max_tokens = 12) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(300);
  json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  if (!salt.empty()) body["cache_salt"] = salt;
  auto r = c.Post("/v1/completions", body.dump(), "application/json");
  Answer a;
  if (!r) return a;
  a.status = r->status;
  a.body = r->body;
  const json j = json::parse(r->body, nullptr, false);
  if (a.status == 200 && j.is_object()) {
    a.text = j["choices"][0]["text"].get<std::string>();
    a.prompt_tokens = j["usage"]["prompt_tokens"].get<int64_t>();
    a.cached_tokens = j["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
  }
  return a;
}

// The value of one /metrics series (a line starting with `series`), or -1.
double Metric(const ServerProcess& s, const std::string& series) {
  httplib::Client c("127.0.0.1", s.port());
  auto r = c.Get("/metrics");
  if (!r) return -1;
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

// Waits until the tier has written at least n blocks (its writes are in the background).
bool WaitStored(const ServerProcess& s, const std::string& tier, double n) {
  const std::string series = "tierlm_prefix_cache_tier_blocks_total{tier=\"" + tier + "\",result=\"stored\"}";
  for (int i = 0; i < 500; ++i) {
    if (Metric(s, series) >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

struct DirUsage {
  uint64_t bytes = 0;
  int files = 0;
};
DirUsage Usage(const fs::path& dir) {
  DirUsage u;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++u.files;
    if (e.is_regular_file()) u.bytes += e.file_size();
  }
  return u;
}

std::vector<fs::path> Segments(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("segment-", 0) == 0) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// The cold answers, from a server that reuses nothing.
std::vector<Answer> ColdAnswers(const std::string& model, const std::vector<std::vector<int32_t>>& prompts,
                                std::vector<std::string> extra = {}) {
  extra.push_back("--no-prefix-cache");
  ServerProcess cold(Args(model, extra));
  EXPECT_TRUE(cold.ok()) << cold.Log();
  std::vector<Answer> out;
  for (const auto& p : prompts) {
    out.push_back(Complete(cold, p));
    EXPECT_EQ(out.back().status, 200) << out.back().body;
    EXPECT_EQ(out.back().cached_tokens, 0);
  }
  return out;
}

TEST(ServerHttpPrefixCacheTest, ARestartedServerAnswersARepeatedLongPromptFromItsDisk) {
  const auto prompt = Prompt(3000, 1);
  const Answer cold = ColdAnswers(Stories(), {prompt})[0];
  const fs::path dir = testing::ScratchDir("prefix-restart") / "cache";
  {
    ServerProcess a(Args(Stories(), {"--prefix-cache-dir", dir.string()}));
    ASSERT_TRUE(a.ok()) << a.Log();
    const Answer first = Complete(a, prompt);
    ASSERT_EQ(first.status, 200) << first.body;
    EXPECT_EQ(first.cached_tokens, 0);
    EXPECT_EQ(first.text, cold.text);
    // Again in the same process: from memory.
    const Answer again = Complete(a, prompt);
    EXPECT_GE(again.cached_tokens, 2900);
    EXPECT_EQ(again.text, cold.text);
    EXPECT_GE(Metric(a, "tierlm_prefix_cache_hit_tokens_total{tier=\"memory\"}"), 2900);
    EXPECT_EQ(a.Stop(), 0) << a.Log();
  }
  const DirUsage u = Usage(dir);
  EXPECT_LE(u.files, 11) << "a few segment files and an index, never a file per block";
  EXPECT_GT(u.bytes, 0u);
  ServerProcess b(Args(Stories(), {"--prefix-cache-dir", dir.string()}));
  ASSERT_TRUE(b.ok()) << b.Log();
  const Answer restarted = Complete(b, prompt);
  ASSERT_EQ(restarted.status, 200) << restarted.body;
  EXPECT_GE(restarted.cached_tokens, 2900) << restarted.body;
  EXPECT_EQ(restarted.prompt_tokens, 3000);
  EXPECT_EQ(restarted.text, cold.text) << "a disk hit changes no token";
  EXPECT_GE(Metric(b, "tierlm_prefix_cache_hit_tokens_total{tier=\"disk\"}"), 2900);
  EXPECT_EQ(Metric(b, "tierlm_prefix_cache_tier_blocks_total{tier=\"disk\",result=\"corrupt\"}"), 0);
}

TEST(ServerHttpPrefixCacheTest, TwoServersShareOneRedisAndSurviveItsStopping) {
  testing::RedisProcess redis;
  ASSERT_TRUE(redis.Start().ok());
  const auto p = Prompt(1000, 2), q = Prompt(600, 3), r = Prompt(400, 4);
  const auto cold = ColdAnswers(Stories(), {p, q, r});
  ServerProcess a(Args(Stories(), {"--redis", redis.url()}));
  ServerProcess b(Args(Stories(), {"--redis", redis.url()}));
  ASSERT_TRUE(a.ok()) << a.Log();
  ASSERT_TRUE(b.ok()) << b.Log();
  const Answer on_a = Complete(a, p);
  ASSERT_EQ(on_a.status, 200) << on_a.body;
  EXPECT_EQ(on_a.cached_tokens, 0);
  EXPECT_EQ(on_a.text, cold[0].text);
  ASSERT_TRUE(WaitStored(a, "redis", 62)) << "1000 prompt + 11 decoded positions: 63 full blocks, 62 of them computed";
  const Answer on_b = Complete(b, p);
  ASSERT_EQ(on_b.status, 200) << on_b.body;
  EXPECT_GE(on_b.cached_tokens, 976) << on_b.body;
  EXPECT_EQ(on_b.text, cold[0].text) << "a prefix computed on one server is a hit on the other";
  EXPECT_GE(Metric(b, "tierlm_prefix_cache_hit_tokens_total{tier=\"redis\"}"), 976);

  // Redis goes away: requests still succeed, with misses and counted errors.
  ASSERT_TRUE(redis.Stop().ok());
  const Answer down = Complete(b, q);
  ASSERT_EQ(down.status, 200) << down.body;
  EXPECT_EQ(down.cached_tokens, 0);
  EXPECT_EQ(down.text, cold[1].text);
  EXPECT_GT(Metric(b, "tierlm_prefix_cache_tier_errors_total{tier=\"redis\"}"), 0);
  // It comes back on the same port: the servers reconnect by themselves.
  ASSERT_TRUE(redis.Start().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // past the tier's retry delay
  const Answer back = Complete(a, r);
  ASSERT_EQ(back.status, 200) << back.body;
  EXPECT_EQ(back.text, cold[2].text);
  ASSERT_TRUE(WaitStored(a, "redis", 62 + 24));
  const Answer shared = Complete(b, r);
  EXPECT_GE(shared.cached_tokens, 384);
  EXPECT_EQ(shared.text, cold[2].text);
}

TEST(ServerHttpPrefixCacheTest, DamagedFullOrCrashedDisksAreMissesNeverWrongAnswers) {
  const auto p = Prompt(1000, 5), q = Prompt(700, 6);
  const auto cold = ColdAnswers(Stories(), {p, q});
  const fs::path dir = testing::ScratchDir("prefix-faults") / "cache";
  const std::vector<std::string> args = {"--prefix-cache-dir", dir.string()};
  auto serve_and_check = [&](const std::string& what, int64_t min_cached) {
    ServerProcess s(Args(Stories(), args));
    EXPECT_TRUE(s.ok()) << what << "\n" << s.Log();
    const Answer ap = Complete(s, p), aq = Complete(s, q);
    EXPECT_EQ(ap.status, 200) << what << ": " << ap.body;
    EXPECT_EQ(aq.status, 200) << what << ": " << aq.body;
    EXPECT_EQ(ap.text, cold[0].text) << what;
    EXPECT_EQ(aq.text, cold[1].text) << what;
    EXPECT_GE(ap.cached_tokens, min_cached) << what;
    EXPECT_EQ(s.Stop(), 0) << what << "\n" << s.Log();
    return ap.cached_tokens;
  };
  serve_and_check("first run", 0);
  EXPECT_GE(serve_and_check("restart", 976), 976);

  // A flipped byte in the middle of the segment: the blocks after it are recomputed.
  auto segs = Segments(dir);
  ASSERT_FALSE(segs.empty());
  {
    std::fstream f(segs.back(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(segs.back()) / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(segs.back()) / 2));
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  serve_and_check("a corrupt segment byte", 0);
  // A segment cut in half.
  segs = Segments(dir);
  ASSERT_FALSE(segs.empty());
  fs::resize_file(segs.back(), fs::file_size(segs.back()) / 2);
  serve_and_check("a truncated segment", 0);
  // No index: rebuilt from the segments, and the blocks in them still hit.
  ASSERT_TRUE(fs::remove(dir / "index"));
  EXPECT_GE(serve_and_check("a deleted index", 976), 976);
  EXPECT_TRUE(fs::exists(dir / "index"));

  // Killed right after answering, while its writer may be mid-write.
  const auto r = Prompt(900, 7);
  {
    ServerProcess s(Args(Stories(), args));
    ASSERT_TRUE(s.ok()) << s.Log();
    ASSERT_EQ(Complete(s, r).status, 200);
    s.Kill();
  }
  serve_and_check("after a kill -9", 0);

  // A disk that fills up: the writes fail (counted), the requests do not.
  const fs::path full = testing::ScratchDir("prefix-full") / "cache";
  setenv("TIERLM_TEST_PREFIX_DISK_BYTES", "300000", 1);
  ServerProcess s(Args(Stories(), {"--prefix-cache-dir", full.string()}));
  unsetenv("TIERLM_TEST_PREFIX_DISK_BYTES");
  ASSERT_TRUE(s.ok()) << s.Log();
  const Answer ap = Complete(s, p), aq = Complete(s, q);
  EXPECT_EQ(ap.status, 200) << ap.body;
  EXPECT_EQ(aq.text, cold[1].text);
  EXPECT_EQ(ap.text, cold[0].text);
  for (int i = 0; i < 200 && Metric(s, "tierlm_prefix_cache_tier_blocks_total{tier=\"disk\",result=\"dropped\"}") <= 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GT(Metric(s, "tierlm_prefix_cache_tier_blocks_total{tier=\"disk\",result=\"dropped\"}"), 0);
  EXPECT_GT(Metric(s, "tierlm_prefix_cache_tier_errors_total{tier=\"disk\"}"), 0);
  EXPECT_EQ(Complete(s, p).text, cold[0].text);
}

TEST(ServerHttpPrefixCacheTest, OtherModelsKvTypesAndSaltsNeverHit) {
  const std::string a = testing::SynthModel("tiny", "q8_0", 42).string();
  const std::string b = testing::SynthModel("tiny", "q8_0", 43).string();  // same vocabulary, other weights
  const auto p = Prompt(300, 8);
  const fs::path dir = testing::ScratchDir("prefix-isolation") / "cache";
  const std::vector<std::string> cache = {"--prefix-cache-dir", dir.string()};
  const Answer cold_b = ColdAnswers(b, {p})[0];
  const Answer cold_q8 = ColdAnswers(a, {p}, {"-ctk", "q8_0"})[0];
  {
    ServerProcess s(Args(a, cache));
    ASSERT_TRUE(s.ok()) << s.Log();
    ASSERT_EQ(Complete(s, p).status, 200);
    EXPECT_EQ(s.Stop(), 0);
  }
  {
    ServerProcess s(Args(b, cache));
    ASSERT_TRUE(s.ok()) << s.Log();
    const Answer other_model = Complete(s, p);
    EXPECT_EQ(other_model.cached_tokens, 0) << "another model file of the same vocabulary";
    EXPECT_EQ(other_model.text, cold_b.text);
    EXPECT_EQ(s.Stop(), 0);
  }
  {
    std::vector<std::string> q8 = cache;
    q8.insert(q8.end(), {"-ctk", "q8_0"});
    ServerProcess s(Args(a, q8));
    ASSERT_TRUE(s.ok()) << s.Log();
    const Answer other_type = Complete(s, p);
    EXPECT_EQ(other_type.cached_tokens, 0) << "another KV key type";
    EXPECT_EQ(other_type.text, cold_q8.text);
    EXPECT_EQ(s.Stop(), 0);
  }
  ServerProcess s(Args(a, cache));
  ASSERT_TRUE(s.ok()) << s.Log();
  EXPECT_EQ(Complete(s, p, "tenant-1").cached_tokens, 0) << "a cache_salt isolates a tenant";
  EXPECT_GE(Complete(s, p, "tenant-1").cached_tokens, 288) << "its own prefixes hit";
  EXPECT_EQ(Complete(s, p, "tenant-2").cached_tokens, 0);
  EXPECT_GE(Complete(s, p).cached_tokens, 288) << "the unsalted blocks of the first server hit";
}

TEST(ServerHttpPrefixCacheTest, TheDirectoryStaysWithinItsBoundUnderAThousandPrefixes) {
  const fs::path dir = testing::ScratchDir("prefix-bound") / "cache";
  // f32 KV: 20 KiB a block; 1,000 prompts of 128 tokens are 160 MiB of blocks for 64 MiB.
  ServerProcess s(Args(Stories(), {"--prefix-cache-dir", dir.string(), "--prefix-cache-size", "64M", "-ctk", "f32",
                                   "-ctv", "f32", "-np", "4"}));
  ASSERT_TRUE(s.ok()) << s.Log();
  std::vector<std::thread> clients;
  std::atomic<int> failed{0};
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      for (int i = c; i < 1000; i += 4)
        if (Complete(s, Prompt(128, 1000 + static_cast<uint32_t>(i)), "", 1).status != 200) ++failed;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(Metric(s, "tierlm_prefix_cache_tier_blocks_total{tier=\"disk\",result=\"evicted\"}"), 0);
  EXPECT_LE(Metric(s, "tierlm_prefix_cache_tier_bytes{tier=\"disk\"}"), 64.0 * 1048576);
  const DirUsage live = Usage(dir);
  EXPECT_LE(live.bytes, 64ull << 20);
  EXPECT_EQ(s.Stop(), 0) << s.Log();
  const DirUsage u = Usage(dir);
  EXPECT_LE(u.bytes, 64ull << 20);
  EXPECT_GT(u.bytes, 32ull << 20) << "the bound is used, not left empty";
  EXPECT_LE(u.files, 11) << "a small, fixed number of files";
}

}  // namespace
}  // namespace tierlm
