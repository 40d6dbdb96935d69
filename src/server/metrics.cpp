#include "server/metrics.h"

#include <cstdio>

namespace tierlm::server {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::Text(const std::string& name, const std::string& help) const {
  std::string out = "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cum = 0;
  char b[256];
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    std::snprintf(b, sizeof b, "%s_bucket{le=\"%g\"} %llu\n", name.c_str(), bounds_[i],
                  static_cast<unsigned long long>(cum));
    out += b;
  }
  cum += counts_.back();
  std::snprintf(b, sizeof b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name.c_str(),
                static_cast<unsigned long long>(cum), name.c_str(), sum_, name.c_str(),
                static_cast<unsigned long long>(count_));
  out += b;
  return out;
}

namespace {
std::vector<double> LatencyBounds() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}
}  // namespace

Metrics::Metrics() : ttft_(LatencyBounds()), itl_(LatencyBounds()) {}

void Metrics::SetGauges(const MetricsSnapshot& s) {
  std::lock_guard<std::mutex> lock(mu_);
  g_ = s;
}
void Metrics::AddPromptTokens(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += static_cast<uint64_t>(n);
}
void Metrics::AddGeneratedTokens(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  generated_tokens_ += static_cast<uint64_t>(n);
}
void Metrics::ObserveTtft(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.Observe(s);
}
void Metrics::ObserveInterToken(double s) {
  std::lock_guard<std::mutex> lock(mu_);
  itl_.Observe(s);
}
void Metrics::CountHttp(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  const int c = status / 100;
  ++http_by_class_[c >= 1 && c <= 5 ? static_cast<size_t>(c) : 0];
}
void Metrics::CountRequestFinished(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  ++(ok ? finished_ok_ : finished_error_);
}
void Metrics::SetWeightReads(uint64_t reads, uint64_t bytes, uint64_t stalls) {
  std::lock_guard<std::mutex> lock(mu_);
  weight_reads_ = reads;
  weight_bytes_ = bytes;
  weight_stalls_ = stalls;
}
void Metrics::SetPrefixCache(const prefix::PrefixCacheStats& s) {
  std::lock_guard<std::mutex> lock(mu_);
  has_prefix_ = true;
  prefix_ = s;
}
MetricsSnapshot Metrics::gauges() const {
  std::lock_guard<std::mutex> lock(mu_);
  return g_;
}

std::string Metrics::Text() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& series) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + series;
  };
  auto line = [](const std::string& name, unsigned long long v) { return name + " " + std::to_string(v) + "\n"; };
  metric("tierlm_requests_running", "gauge", "Generation requests in the running batch.",
         line("tierlm_requests_running", static_cast<unsigned long long>(g_.requests_running)));
  metric("tierlm_requests_queued", "gauge", "Generation requests waiting for KV blocks or a slot.",
         line("tierlm_requests_queued", static_cast<unsigned long long>(g_.requests_queued)));
  metric("tierlm_kv_blocks_used", "gauge", "KV cache blocks held by sequences.",
         line("tierlm_kv_blocks_used", static_cast<unsigned long long>(g_.kv_blocks_used)));
  metric("tierlm_kv_blocks_total", "gauge", "KV cache blocks in all.",
         line("tierlm_kv_blocks_total", static_cast<unsigned long long>(g_.kv_blocks_total)));
  metric("tierlm_requests_preempted_total", "counter",
         "Running requests preempted because the unified KV cache ran out of blocks (recomputed when re-admitted).",
         line("tierlm_requests_preempted_total", static_cast<unsigned long long>(g_.requests_preempted)));
  metric("tierlm_prompt_tokens_total", "counter", "Prompt tokens evaluated.",
         line("tierlm_prompt_tokens_total", prompt_tokens_));
  metric("tierlm_generation_tokens_total", "counter", "Tokens generated.",
         line("tierlm_generation_tokens_total", generated_tokens_));
  metric("tierlm_requests_finished_total", "counter", "Generation requests finished, by outcome.",
         "tierlm_requests_finished_total{outcome=\"ok\"} " + std::to_string(finished_ok_) + "\n" +
             "tierlm_requests_finished_total{outcome=\"error\"} " + std::to_string(finished_error_) + "\n");
  metric("tierlm_weight_disk_read_bytes_total", "counter", "Weight bytes read from the model file under --mem-budget.",
         line("tierlm_weight_disk_read_bytes_total", weight_bytes_));
  metric("tierlm_weight_disk_reads_total", "counter", "Weight reads from the model file under --mem-budget.",
         line("tierlm_weight_disk_reads_total", weight_reads_));
  metric("tierlm_weight_stalls_total", "counter", "Weight acquires that waited for a read.",
         line("tierlm_weight_stalls_total", weight_stalls_));
  if (has_prefix_) {
    const prefix::PrefixCacheStats& p = prefix_;
    metric("tierlm_prefix_cache_lookup_tokens_total", "counter", "Prompt tokens looked up in the prefix cache.",
           line("tierlm_prefix_cache_lookup_tokens_total", p.lookup_tokens));
    metric("tierlm_prefix_cache_hit_tokens_total", "counter", "Prompt tokens reused from the prefix cache, by tier.",
           "tierlm_prefix_cache_hit_tokens_total{tier=\"memory\"} " + std::to_string(p.memory_tokens) + "\n" +
               "tierlm_prefix_cache_hit_tokens_total{tier=\"disk\"} " + std::to_string(p.disk_tokens) + "\n" +
               "tierlm_prefix_cache_hit_tokens_total{tier=\"redis\"} " + std::to_string(p.redis_tokens) + "\n");
    metric("tierlm_prefix_cache_declined_blocks_total", "counter",
           "Blocks a tier held but recomputing was predicted faster than loading.",
           line("tierlm_prefix_cache_declined_blocks_total", p.declined_blocks));
    std::string blocks, errors, bytes;
    auto tier = [&](const char* name, const prefix::TierCounters& c) {
      const std::pair<const char*, uint64_t> rows[] = {{"hit", c.hits},         {"miss", c.misses},
                                                       {"corrupt", c.corrupt},  {"stored", c.stored},
                                                       {"dropped", c.dropped},  {"evicted", c.evicted}};
      for (const auto& [result, v] : rows)
        blocks += std::string("tierlm_prefix_cache_tier_blocks_total{tier=\"") + name + "\",result=\"" + result +
                  "\"} " + std::to_string(v) + "\n";
      errors += std::string("tierlm_prefix_cache_tier_errors_total{tier=\"") + name + "\"} " +
                std::to_string(c.errors) + "\n";
      bytes += std::string("tierlm_prefix_cache_tier_bytes{tier=\"") + name + "\"} " +
               std::to_string(c.resident_bytes) + "\n";
    };
    if (p.has_disk) tier("disk", p.disk);
    if (p.has_redis) tier("redis", p.redis);
    if (!blocks.empty()) {
      metric("tierlm_prefix_cache_tier_blocks_total", "counter", "Prefix cache blocks of the disk and Redis tiers, by result.",
             blocks);
      metric("tierlm_prefix_cache_tier_errors_total", "counter",
             "I/O errors and unreachable-server failures of a prefix cache tier (each a miss, never a failed request).",
             errors);
      metric("tierlm_prefix_cache_tier_bytes", "gauge", "Bytes a prefix cache tier holds (Redis: 0, not known).", bytes);
    }
  }
  std::string http;
  const char* cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (size_t i = 0; i < 6; ++i)
    http += std::string("tierlm_http_responses_total{class=\"") + cls[i] + "\"} " + std::to_string(http_by_class_[i]) + "\n";
  metric("tierlm_http_responses_total", "counter", "HTTP responses, by status class.", http);
  out += ttft_.Text("tierlm_time_to_first_token_seconds", "Time from a request's arrival to its first token.");
  out += itl_.Text("tierlm_inter_token_latency_seconds", "Time between successive tokens of a choice.");
  return out;
}

}  // namespace tierlm::server
