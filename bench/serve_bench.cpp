// serve_bench: a load generator for an OpenAI-compatible server (tierlm serve, llama-server).
// For each client count, that many clients stream completions at once, each sending
// --requests requests one after another; it reports aggregate generated tokens per second,
// time to first token and inter-token latency (p50, p99), per client count.
//
//   serve_bench --url http://127.0.0.1:8080 --clients 1,4,16 --requests 4 -n 64 [--json]
//
// Tokens are counted as the server's stream delivers them: one SSE chunk with text is one
// token for tierlm serve and llama-server; the usage of the last chunk
// (stream_options.include_usage) is the exact count, used for the aggregate rate. The 256
// byte tokens are excluded with logit_bias (--no-byte-bias: not), so that random weights do
// not produce invalid UTF-8 that some servers refuse.
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::vector<int> clients = {1, 4, 16};
  int requests = 4;
  int n_predict = 64;
  std::string prompt = "Once upon a time";
  std::string api_key;
  bool byte_bias = true;
  bool json_out = false;
};

struct Sample {
  double ttft_s = 0;
  std::vector<double> itl_s;
  int64_t tokens = 0;
  bool ok = false;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

Sample OneRequest(const Options& o) {
  Sample s;
  httplib::Client c(o.host, o.port);
  c.set_read_timeout(3600);
  json body = {{"prompt", o.prompt},   {"max_tokens", o.n_predict}, {"temperature", 0},
               {"stream", true},       {"stream_options", {{"include_usage", true}}}};
  if (o.byte_bias) {
    json bias = json::object();
    for (int t = 3; t < 259; ++t) bias[std::to_string(t)] = -100;
    body["logit_bias"] = bias;
  }
  httplib::Headers headers;
  if (!o.api_key.empty()) headers.emplace("Authorization", "Bearer " + o.api_key);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = headers;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  const auto t0 = Clock::now();
  auto last = t0;
  std::string buf;
  int64_t chunks = 0;
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    buf.append(d, n);
    size_t end;
    while ((end = buf.find("\n\n")) != std::string::npos) {
      const std::string ev = buf.substr(0, end);
      buf.erase(0, end + 2);
      if (ev.rfind("data: ", 0) != 0 || ev == "data: [DONE]") continue;
      json j = json::parse(ev.substr(6), nullptr, false);
      if (!j.is_object()) continue;
      if (j.contains("usage") && j["usage"].is_object()) s.tokens = j["usage"].value("completion_tokens", int64_t{0});
      if (!j.contains("choices") || j["choices"].empty()) continue;
      const json& ch = j["choices"][0];
      const std::string text = ch.contains("text") && ch["text"].is_string() ? ch["text"].get<std::string>() : "";
      if (text.empty()) continue;
      const auto now = Clock::now();
      if (chunks == 0) s.ttft_s = std::chrono::duration<double>(now - t0).count();
      else s.itl_s.push_back(std::chrono::duration<double>(now - last).count());
      last = now;
      ++chunks;
    }
    return true;
  };
  auto r = c.send(req);
  s.ok = r && r->status == 200;
  if (s.tokens == 0) s.tokens = chunks;
  return s;
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t comma = std::min(s.find(',', at), s.size());
    out.push_back(std::atoi(s.substr(at, comma - at).c_str()));
    at = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--url") {
      std::string u = next();
      if (u.rfind("http://", 0) == 0) u = u.substr(7);
      const size_t colon = u.rfind(':');
      o.host = u.substr(0, colon);
      if (colon != std::string::npos) o.port = std::atoi(u.c_str() + colon + 1);
    } else if (a == "--clients") {
      o.clients = ParseList(next());
    } else if (a == "--requests") {
      o.requests = std::atoi(next().c_str());
    } else if (a == "-n") {
      o.n_predict = std::atoi(next().c_str());
    } else if (a == "-p") {
      o.prompt = next();
    } else if (a == "--api-key") {
      o.api_key = next();
    } else if (a == "--no-byte-bias") {
      o.byte_bias = false;
    } else if (a == "--json") {
      o.json_out = true;
    } else {
      std::fprintf(stderr, "usage: serve_bench --url http://HOST:PORT [--clients 1,4,16] [--requests 4] [-n 64] "
                           "[-p PROMPT] [--api-key KEY] [--no-byte-bias] [--json]\n");
      return a == "-h" || a == "--help" ? 0 : 2;
    }
  }
  for (int c : o.clients)
    if (c <= 0 || o.requests <= 0 || o.n_predict <= 0) {
      std::fprintf(stderr, "error: clients, --requests and -n must be positive\n");
      return 2;
    }
  json rows = json::array();
  if (!o.json_out)
    std::printf("%8s %9s %8s %12s %10s %10s %10s %10s\n", "clients", "requests", "failed", "tokens/s", "ttft p50",
                "ttft p99", "itl p50", "itl p99");
  int failures = 0;
  for (int n_clients : o.clients) {
    std::vector<Sample> samples;
    std::mutex mu;
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < n_clients; ++c)
      threads.emplace_back([&] {
        for (int r = 0; r < o.requests; ++r) {
          Sample s = OneRequest(o);
          std::lock_guard<std::mutex> lock(mu);
          samples.push_back(std::move(s));
        }
      });
    for (auto& t : threads) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    int64_t tokens = 0;
    int failed = 0;
    std::vector<double> ttft, itl;
    for (const Sample& s : samples) {
      if (!s.ok) {
        ++failed;
        continue;
      }
      tokens += s.tokens;
      ttft.push_back(s.ttft_s);
      itl.insert(itl.end(), s.itl_s.begin(), s.itl_s.end());
    }
    failures += failed;
    const double tps = wall > 0 ? static_cast<double>(tokens) / wall : 0;
    json row = {{"clients", n_clients},
                {"requests", samples.size()},
                {"failed", failed},
                {"tokens", tokens},
                {"seconds", wall},
                {"tokens_per_s", tps},
                {"ttft_p50_ms", Percentile(ttft, 0.5) * 1e3},
                {"ttft_p99_ms", Percentile(ttft, 0.99) * 1e3},
                {"itl_p50_ms", Percentile(itl, 0.5) * 1e3},
                {"itl_p99_ms", Percentile(itl, 0.99) * 1e3}};
    rows.push_back(row);
    if (!o.json_out)
      std::printf("%8d %9zu %8d %12.1f %8.1fms %8.1fms %8.1fms %8.1fms\n", n_clients, samples.size(), failed, tps,
                  row["ttft_p50_ms"].get<double>(), row["ttft_p99_ms"].get<double>(),
                  row["itl_p50_ms"].get<double>(), row["itl_p99_ms"].get<double>());
  }
  if (o.json_out) std::printf("%s\n", rows.dump(2).c_str());
  return failures > 0 ? 1 : 0;
}
