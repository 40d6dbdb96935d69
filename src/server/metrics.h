// Metrics: the server's counters, gauges and latency histograms, written as Prometheus
// text (GET /metrics). Thread-safe: the compute thread and HTTP threads update it.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "prefix/prefix_cache.h"

namespace tierlm::server {

// A cumulative histogram over fixed bucket bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  // Prometheus lines for `name` (the _bucket, _sum and _count series).
  std::string Text(const std::string& name, const std::string& help) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, plus +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct MetricsSnapshot {
  int64_t requests_running = 0;
  int64_t requests_queued = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  int64_t requests_preempted = 0;  // since start (unified KV: blocks ran out)
};

class Metrics {
 public:
  Metrics();
  void SetGauges(const MetricsSnapshot& s);
  void AddPromptTokens(int64_t n);
  void AddGeneratedTokens(int64_t n);
  void ObserveTtft(double seconds);
  void ObserveInterToken(double seconds);
  // One answered HTTP request of an endpoint, by status.
  void CountHttp(int status);
  void CountRequestFinished(bool ok);
  // Weights streamed from the model file under a budget, since load (0 when all are in memory).
  void SetWeightReads(uint64_t reads, uint64_t bytes, uint64_t stalls);
  // The prefix cache's counters, per tier (absent: no prefix series are written).
  void SetPrefixCache(const prefix::PrefixCacheStats& s);

  MetricsSnapshot gauges() const;
  std::string Text() const;

 private:
  mutable std::mutex mu_;
  MetricsSnapshot g_;
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  uint64_t finished_ok_ = 0, finished_error_ = 0;
  uint64_t weight_reads_ = 0, weight_bytes_ = 0, weight_stalls_ = 0;
  bool has_prefix_ = false;
  prefix::PrefixCacheStats prefix_;
  std::array<uint64_t, 6> http_by_class_{};  // 1xx..5xx by first digit, [0] other
  Histogram ttft_, itl_;
};

}  // namespace tierlm::server
