// tierlm bench: llama-bench-compatible prefill (pp) and decode (tg) throughput.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include "cli/args.h"
#include "cli/bench_prefix.h"
#include "cli/kv_options.h"
#include "kv/paged_kv_cache.h"
#include "model/batch.h"
#include "cli/commands.h"
#include "cli/load_progress.h"
#include "core/format_bytes.h"
#include "core/memory_bandwidth.h"
#include "core/progress.h"
#include "io/posix_storage_env.h"
#include "io/read_bandwidth.h"
#include "moe/moe_report.h"
#include "moe/routing_stats.h"
#include "runtime/engine.h"
#include "tiers/tiered_weight_store.h"

namespace tierlm::cli {
namespace {

struct Row {
  std::string test;
  int64_t n_prompt = 0, n_gen = 0;
  int64_t n_depth = 0;  // -d: the context already holds this many tokens
  int64_t n_seqs = 1;   // --batch-seqs: sequences decoding together (t/s counts them all)
  std::vector<double> samples_ns, samples_ts;
  double avg_ts = 0, stddev_ts = 0, min_ts = 0, median_ts = 0, max_ts = 0;
  double bw_limit_ts = 0;    // decode only: triad bandwidth / weight bytes per token
  double read_limit_ts = 0;  // decode only: pure-read bandwidth / weight bytes per token
  // Under a memory budget: weights streamed per token, the share of time spent waiting
  // for reads, and the hit rate of weight acquires.
  bool tiered = false;
  double read_bytes_per_token = 0, stall_fraction = 0, hit_rate = 0;
  // A tiered KV cache: bytes read back from its spill file per token (decode) or prompt.
  bool kv_tiered = false;
  double kv_read_bytes_per_token = 0, kv_written_bytes_per_token = 0;
  // Decode tests: the share of KV blocks attention read per step (below 1 with --kv-sparse)
  // and the KV bytes it read per token (from memory; kv_read_bytes_per_token: from disk).
  double kv_blocks_read_share = 1, kv_attended_bytes_per_token = 0;
  // MoE decode (MoeLive): expert hit rate, low-bit share, gate-ahead accuracy, hidden
  // share of miss latency, consecutive-token expert overlap.
  bool moe = false;
  double moe_hit_rate = 0, moe_read_ahead = 0, moe_lowbit_share = 0, moe_gate_accuracy = 0, moe_hidden_share = 0,
         moe_consecutive_overlap = 0;
};

// Sequence 0 of the engine's cache holds `toks` at positions [0, n) with random keys and
// values written directly, layer by layer (a tiered cache spills them as it goes): what a
// decode at depth n reads costs the same as after a real prefill, without its time.
Status FillKvRandom(Engine& e, const std::vector<int32_t>& toks, uint64_t seed) {
  kv::PagedKvCache& cache = e.kv().paged();
  const kv::SeqId s = KvCache::kSeq;
  // Sparse retrieval scores blocks by their key bounds: kept as the keys are written.
  if (e.model().kv_sparse().mode != kv::KvSparseMode::kExact)
    cache.store().EnableSummaries(e.model().kv_sparse().mean_skipped);
  TIERLM_RETURN_IF_ERROR(cache.AddTokens(s, toks));
  const ModelHParams& hp = e.model().hparams();
  const int64_t KV = hp.kv_dim(), n = static_cast<int64_t>(toks.size());
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> pool(static_cast<size_t>(KV) * 64 + 4096);
  for (float& x : pool) x = nd(rng);
  const auto table = cache.blocks().BlockTable(s);
  const std::vector<kv::BlockId> blocks(table.begin(), table.begin() + (n + cache.format().block_size - 1) /
                                                                         cache.format().block_size);
  kv::PagedKvStore& store = cache.store();
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    std::vector<kv::BlockFailure> bad;
    store.PinLayer(l, blocks, blocks, &bad);
    if (!bad.empty()) {
      store.UnpinLayer();
      return bad.front().status.WithContext("bench: filling the KV cache, layer " + std::to_string(l));
    }
    for (int64_t p = 0; p < n; ++p) {
      const size_t at = static_cast<size_t>((p * 4099 + l * 131) % 4096);
      store.Write(l, cache.blocks().Slot(s, p), pool.data() + at, pool.data() + at + static_cast<size_t>(KV) * 32);
    }
    store.UnpinLayer();
  }
  cache.SetComputed(s, n);
  return Status::Ok();
}

void Summarize(Row& r) {
  const auto& s = r.samples_ts;
  r.avg_ts = std::accumulate(s.begin(), s.end(), 0.0) / s.size();
  double var = 0;
  for (double x : s) var += (x - r.avg_ts) * (x - r.avg_ts);
  r.stddev_ts = s.size() > 1 ? std::sqrt(var / (s.size() - 1)) : 0;
  std::vector<double> sorted = s;
  std::sort(sorted.begin(), sorted.end());
  r.min_ts = sorted.front();
  r.max_ts = sorted.back();
  r.median_ts = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                  : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
}

std::string JsonList(const std::vector<double>& v, bool integers) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    char b[40];
    if (integers) std::snprintf(b, sizeof b, "%.0f", v[i]);
    else std::snprintf(b, sizeof b, "%.6f", v[i]);
    out += (i ? ", " : "") + std::string(b);
  }
  return out + "]";
}

// What one decode test saw of the MoE machinery.
struct MoeLive {
  std::string test;
  bool tiered = false;
  ClassStats experts;  // the expert class's residency stats over the timed repetitions
  int64_t gate_predicted = 0, gate_correct = 0;
  int64_t tokens = 0;
  int64_t store_nanos = 0;  // time the decode spent inside the weight store
  MoeCopyStats copies;  // expert computations by copy (full / low-bit)
  RoutingStats routing;
  // Share of expert slices resident when needed; of expert computations from low-bit
  // copies; gate-ahead accuracy; share of miss latency hidden (see PrintMoeSummary).
  double hit_rate = 0, read_ahead = 0, lowbit_share = 0, gate_accuracy = 0, hidden_share = 0;
};

// Fills the derived rates. disk_bps: measured re-read bandwidth (0: unknown).
void Derive(MoeLive& m, double disk_bps) {
  const ClassStats& x = m.experts;
  // Cache hits: resident before the layer asked for them (read-ahead not counted).
  m.hit_rate = x.acquires > 0 ? static_cast<double>(x.hits - x.prefetch_hits) / x.acquires : 0;
  m.read_ahead = x.acquires > 0 ? static_cast<double>(x.prefetch_hits) / x.acquires : 0;
  const double comps = static_cast<double>(m.copies.full + m.copies.lowbit);
  m.lowbit_share = comps > 0 ? m.copies.lowbit / comps : 0;
  m.gate_accuracy = m.gate_predicted > 0 ? static_cast<double>(m.gate_correct) / m.gate_predicted : 0;
  // Hidden share: 1 - (time compute spent in the store: waiting for reads, queueing them)
  // / (time reading the same bytes one synchronous read after another at the disk's
  // measured bandwidth would take). When the disk is the bottleneck, at most the compute
  // time can hide reads, whatever the prefetcher does.
  if (disk_bps > 0 && x.bytes_read > 0) {
    const double serial_ns = x.bytes_read / disk_bps * 1e9;
    m.hidden_share = std::clamp(1.0 - static_cast<double>(m.store_nanos) / serial_ns, 0.0, 1.0);
  } else {
    m.hidden_share = x.HiddenMissShare();
  }
}

void PrintMoeSummary(Engine& e, const std::vector<MoeLive>& live) {
  const ModelHParams& hp = e.model().hparams();
  for (const MoeLive& m : live) {
    std::printf("%s routing (%lld random tokens, top-%lld of %lld): %s\n", m.test.c_str(),
                static_cast<long long>(m.tokens), static_cast<long long>(hp.n_expert_used),
                static_cast<long long>(hp.n_expert), m.routing.ToString().c_str());
    if (m.gate_predicted > 0)
      std::printf("%s gate-ahead: %.1f%% of the next layer's experts predicted (chance %.1f%%)\n", m.test.c_str(),
                  100.0 * m.gate_accuracy, 100.0 * hp.n_expert_used / hp.n_expert);
    if (!m.tiered) continue;
    const ClassStats& x = m.experts;
    const double acq = x.acquires > 0 ? static_cast<double>(x.acquires) : 1.0;
    std::printf("%s expert cache (%s): %.1f%% of expert slices resident when needed (%.1f%% cached, %.1f%% read "
                "ahead), %.1f%% waited for; %.1f MiB of experts read per token; %.0f%% of the miss latency hidden; "
                "experts computed from low-bit copies: %.1f%%\n",
                m.test.c_str(), e.tiered()->manager().policy()->name(), 100.0 * x.hits / acq,
                100.0 * (x.hits - x.prefetch_hits) / acq, 100.0 * x.prefetch_hits / acq, 100.0 * x.misses / acq,
                m.tokens > 0 ? x.bytes_read / 1048576.0 / static_cast<double>(m.tokens) : 0.0,
                100.0 * m.hidden_share, 100.0 * m.lowbit_share);
  }
}

Status PrintMoeSimulation(Engine& e, const RoutingTrace& trace) {
  const ModelHParams& hp = e.model().hparams();
  if (trace.n_tokens() == 0) return Status::Ok();
  MoeReportOptions o;
  o.locality = {};
  if (e.tiered()) {
    // The live expert cache, in experts: what the pinned set leaves, over one expert's slices.
    const WeightPlacement& pl = e.tiered()->placement();
    uint64_t one_expert = 0;
    for (const WeightUnit& u : pl.units)
      if (u.expert && u.name.size() > 2 && u.name.compare(u.name.size() - 2, 2, "#0") == 0 &&
          u.name.rfind("blk.0.", 0) == 0)
        one_expert += u.slot_bytes;
    if (one_expert > 0) {
      const int64_t cap = static_cast<int64_t>(pl.ring_bytes / one_expert);
      o.extra_capacities.push_back({cap, "this budget's cache"});
      std::printf("\nexpert cache under this budget: %s = %lld experts = %.2fx the experts a token uses\n",
                  FormatBytes(pl.ring_bytes).c_str(), static_cast<long long>(cap),
                  static_cast<double>(cap) / (static_cast<double>(hp.n_expert_used) * hp.n_layer));
    }
  }
  TIERLM_ASSIGN_OR_RETURN(std::string report, MoeReport(trace, o));
  std::printf("\nsimulated on this run's routing trace (all decode tests):\n%s", report.c_str());
  return Status::Ok();
}

// Mean KL(exact || mode) of the next-token distributions over n random tokens, and the
// share of tokens whose argmax agrees: the accuracy cost of --moe-miss.
struct KlResult {
  double mean_kl = 0, max_kl = 0, top1_agree = 0;
  int64_t tokens = 0;
};

// Mean and max KL(p || q) of next-token distributions given as logits, one pair per
// position, and the share of positions whose argmax agrees.
KlResult CompareDistributions(const std::vector<std::vector<float>>& p_logits,
                              const std::vector<std::vector<float>>& q_logits) {
  KlResult r;
  r.tokens = static_cast<int64_t>(p_logits.size());
  const double n = static_cast<double>(p_logits.size());
  for (size_t i = 0; i < p_logits.size(); ++i) {
    const auto& p = p_logits[i];
    const auto& q = q_logits[i];
    const double mp = *std::max_element(p.begin(), p.end()), mq = *std::max_element(q.begin(), q.end());
    double zp = 0, zq = 0;
    for (size_t j = 0; j < p.size(); ++j) zp += std::exp(p[j] - mp), zq += std::exp(q[j] - mq);
    double kl = 0;
    for (size_t j = 0; j < p.size(); ++j) {
      const double lp = p[j] - mp - std::log(zp), lq = q[j] - mq - std::log(zq);
      kl += std::exp(lp) * (lp - lq);
    }
    r.mean_kl += kl / n;
    r.max_kl = std::max(r.max_kl, kl);
    const auto ap = std::max_element(p.begin(), p.end()) - p.begin();
    const auto aq = std::max_element(q.begin(), q.end()) - q.begin();
    r.top1_agree += (ap == aq) ? 1.0 / n : 0.0;
  }
  return r;
}

Result<KlResult> MeasureMissKl(Engine& e, MoeMiss mode, int64_t n, uint64_t seed) {
  const ModelHParams& hp = e.model().hparams();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(hp.n_vocab - 1));
  std::vector<int32_t> toks(static_cast<size_t>(n));
  for (auto& t : toks) t = dist(rng);
  auto run = [&](MoeMiss m, std::vector<std::vector<float>>* out) -> Status {
    e.model().moe_ffn().set_miss_mode(m);
    e.kv().set_n_past(0);
    std::vector<float> logits;
    for (int32_t t : toks) {
      TIERLM_RETURN_IF_ERROR(e.model().Forward(std::span<const int32_t>(&t, 1), e.kv(), false, &logits, &e.pool()));
      out->push_back(logits);
    }
    return Status::Ok();
  };
  std::vector<std::vector<float>> exact, approx;
  Status st = run(MoeMiss::kExact, &exact);
  if (st.ok()) st = run(mode, &approx);
  e.model().moe_ffn().set_miss_mode(mode);
  e.kv().set_n_past(0);
  TIERLM_RETURN_IF_ERROR(st);
  return CompareDistributions(exact, approx);
}

// Mean KL(f32 KV || the engine's KV types) of the next-token distributions over a random
// prompt of n tokens (one batch) and n more decoded one at a time, and the share of
// positions whose argmax agrees: the accuracy cost of -ctk / -ctv.
Result<KlResult> MeasureKvKl(Engine& e, int64_t n, uint64_t seed) {
  const ModelHParams& hp = e.model().hparams();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(hp.n_vocab - 1));
  std::vector<int32_t> toks(static_cast<size_t>(2 * n));
  for (auto& t : toks) t = dist(rng);
  auto run = [&](KvCache& kv, std::vector<std::vector<float>>* out) -> Status {
    std::vector<float> logits;
    TIERLM_RETURN_IF_ERROR(e.model().Forward(std::span<const int32_t>(toks.data(), static_cast<size_t>(n)), kv, true,
                                             &logits, &e.pool()));
    for (int64_t i = 0; i < n; ++i)
      out->emplace_back(logits.begin() + i * hp.n_vocab, logits.begin() + (i + 1) * hp.n_vocab);
    for (int64_t i = n; i < 2 * n; ++i) {
      TIERLM_RETURN_IF_ERROR(e.model().Forward(std::span<const int32_t>(&toks[static_cast<size_t>(i)], 1), kv, false,
                                               &logits, &e.pool()));
      out->push_back(logits);
    }
    return Status::Ok();
  };
  kv::KvFormat f32 = e.kv().format();
  f32.k_type = f32.v_type = GgmlType::kF32;
  TIERLM_ASSIGN_OR_RETURN(KvCache ref_kv, KvCache::Create(e.model().kv_shape(), 2 * n, f32));
  std::vector<std::vector<float>> exact, approx;
  TIERLM_RETURN_IF_ERROR(run(ref_kv, &exact));
  e.kv().set_n_past(0);
  TIERLM_RETURN_IF_ERROR(run(e.kv(), &approx));
  e.kv().set_n_past(0);
  return CompareDistributions(exact, approx);
}

std::string MoeJson(const Row& r, const std::string& miss, const KlResult* kl) {
  if (!r.moe) return "";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                ", \"moe_miss\": \"%s\", \"moe_expert_hit_rate\": %.4f, \"moe_read_ahead_share\": %.4f, "
                "\"moe_lowbit_share\": %.4f, "
                "\"moe_gate_ahead_accuracy\": %.4f, \"moe_hidden_miss_share\": %.4f, "
                "\"moe_consecutive_overlap\": %.4f",
                miss.c_str(), r.moe_hit_rate, r.moe_read_ahead, r.moe_lowbit_share, r.moe_gate_accuracy, r.moe_hidden_share,
                r.moe_consecutive_overlap);
  std::string out = buf;
  if (kl) {
    std::snprintf(buf, sizeof buf, ", \"moe_kl_vs_exact\": %.6g, \"moe_top1_agree\": %.4f", kl->mean_kl,
                  kl->top1_agree);
    out += buf;
  }
  return out;
}

}  // namespace

int BenchCommand(int argc, char** argv) {
  ArgParser ap("bench");
  std::string model, prompts = "512", gens = "128", output = "md", budget_text;
  int32_t threads = 0, reps = 5;
  int64_t batch = 512;
  bool no_bw = false, cold = false, moe_report = false, no_gate_ahead = false;
  std::string moe_policy = "lfu-decay", moe_miss = "exact", lowbit_cache;
  ap.Add({"-m", "--model"}, &model, "GGUF model file");
  ap.Add({"-p", "--n-prompt"}, &prompts, "prompt lengths for prefill tests, comma-separated; 0: none (default 512)");
  ap.Add({"-n", "--n-gen"}, &gens, "generation lengths for decode tests, comma-separated; 0: none (default 128)");
  ap.Add({"-r", "--repetitions"}, &reps, "repetitions of each test, at least 1 (default 5)");
  ap.Add({"-t", "--threads"}, &threads, "threads, at most 1024 (default and <= 0: all cores)");
  ap.Add({"-b", "--batch-size"}, &batch, "prompt tokens per batch, at least 1 (default 512)");
  ap.Add({"-o", "--output"}, &output, "output format: md, csv or json (default md)");
  ap.Flag({"--no-bandwidth"}, &no_bw, "skip the memory and disk bandwidth measurements");
  ap.Add({"--mem-budget"}, &budget_text, "bound on all engine memory, e.g. 6G (default: unlimited)");
  ap.Flag({"--cold"}, &cold, "drop the model file from the page cache first and report cold-start time");
  ap.Add({"--moe-policy"}, &moe_policy, "expert cache eviction under a budget: lru, lfu-decay, score (default lfu-decay)");
  ap.Flag({"--no-gate-ahead"}, &no_gate_ahead, "do not prefetch the experts the next layer's router predicts");
  ap.Add({"--moe-miss"}, &moe_miss, "an expert not in memory: exact, lowbit, auto, lowbit-all (see tierlm run --help)");
  ap.Add({"--lowbit-cache"}, &lowbit_cache, "low-bit expert cache file (default: <model>.tierlm-lowbit)");
  std::string depths = "0";
  std::string depth_fill = "compute";
  int64_t batch_seqs = 0;
  KvTypeFlags kv_types;
  ap.Add({"-d", "--n-depth"}, &depths,
         "context depths, comma-separated: each test runs after this many tokens are in the KV cache (default 0)");
  ap.Add({"--depth-fill"}, &depth_fill,
         "how the -d context is filled: compute (a random prompt run through the model, as llama-bench) or random "
         "(random keys and values written directly: same decode cost, no prefill time; for depths too long to "
         "prefill) (default compute)");
  ap.Add({"--batch-seqs"}, &batch_seqs,
         "also a decode test of S sequences (each at the depth) decoding together in one batch: aggregate t/s");
  AddKvTypeOptions(ap, &kv_types);
  ap.Flag({"--moe-report"}, &moe_report,
          "MoE: record the routing of the decode tests and report the live expert cache, gate-ahead prefetch, "
          "routing statistics and every policy's simulated hit rate (Belady included)");
  bool quiet = false;
  int64_t prefix_prompt = 0;
  PrefixBenchOptions prefix_options;
  ap.Add({"--prefix"}, &prefix_prompt,
         "instead of pp/tg: time to first token of a prompt of this many tokens, cold and warm from each tier of "
         "the prefix cache (memory, disk after a restart, Redis from another instance) (default 0: off)");
  ap.Add({"--prefix-cache-dir"}, &prefix_options.dir, "--prefix: the disk tier's directory (default: a fresh one)");
  ap.Add({"--redis"}, &prefix_options.redis_url, "--prefix: a Redis server for the Redis rows, e.g. redis://127.0.0.1:6379");
  ap.Flag({"-q", "--quiet"}, &quiet, "print no progress lines on stderr (loading, low-bit cache, test runs)");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (model.empty()) return ReportError(Status::InvalidArgument("bench: -m MODEL.gguf is required"));
  if (output != "md" && output != "csv" && output != "json")
    return ReportError(Status::InvalidArgument("bench: -o must be md, csv or json"));
  if (depth_fill != "compute" && depth_fill != "random")
    return ReportError(Status::InvalidArgument("bench: --depth-fill must be compute or random"));
  if (reps < 1) return ReportError(Status::InvalidArgument("bench: -r must be at least 1"));
  auto pp = ParseIntList("-p", prompts);
  if (!pp.ok()) return ReportError(pp.status());
  auto tg = ParseIntList("-n", gens);
  if (!tg.ok()) return ReportError(tg.status());
  if (batch <= 0) return ReportError(Status::InvalidArgument("batch size (-b) must be positive"));
  auto dd = ParseIntList("-d", depths);
  if (!dd.ok()) return ReportError(dd.status());
  if (batch_seqs < 0 || batch_seqs > 256)
    return ReportError(Status::InvalidArgument("bench: --batch-seqs must be in [0, 256]"));
  auto resolved_threads = ResolveThreadCount(threads);
  if (!resolved_threads.ok()) return ReportError(resolved_threads.status());
  NoteThreads(threads);

  EngineOptions eo;
  eo.model_path = model;
  eo.n_threads = threads;
  eo.n_batch = batch;
  eo.moe_policy = moe_policy;
  eo.gate_ahead = !no_gate_ahead;
  {
    auto mm = ParseMoeMiss(moe_miss);
    if (!mm.ok()) return ReportError(mm.status());
    eo.moe_miss = *mm;
  }
  eo.lowbit_cache_path = lowbit_cache;
  if (!budget_text.empty()) {
    auto b = ParseByteSize(budget_text);
    if (!b.ok()) return ReportError(b.status().WithContext("--mem-budget"));
    if (*b == 0) return ReportError(Status::InvalidArgument("--mem-budget must be positive"));
    eo.mem_budget_bytes = *b;
  }
  st = ApplyKvTypes(kv_types, &eo.kv_format, &eo.kv_mem_bytes);
  if (!st.ok()) return ReportError(st);
  st = ApplyKvSparse(kv_types, &eo.kv_sparse);
  if (!st.ok()) return ReportError(st);
  st = ApplyKvEvict(kv_types, &eo.kv_evict);
  if (!st.ok()) return ReportError(st);
  eo.kv_spill_dir = kv_types.spill_dir;
  int64_t max_ctx = 16, max_depth = 0;
  for (int64_t p : *pp) max_ctx = std::max(max_ctx, p);
  for (int64_t n : *tg) max_ctx = std::max(max_ctx, n);
  for (int64_t d : *dd) max_depth = std::max(max_depth, d);
  eo.n_ctx = max_ctx + max_depth;
  if (prefix_prompt < 0) return ReportError(Status::InvalidArgument("bench: --prefix must not be negative"));
  if (prefix_prompt > 0) eo.n_ctx = std::max(eo.n_ctx, prefix_prompt);
  // Bandwidths first, before the engine holds its memory: under a budget the probes'
  // buffers must not add to the engine's peak.
  double triad = 0, read_bw = 0, disk = 0, disk_first = 0;
  const uint64_t read_probe_bytes = ReadProbeBytes();
  if (!no_bw) {
    auto probe_pool = ThreadPool::Create(*resolved_threads);
    if (!probe_pool.ok()) return ReportError(probe_pool.status());
    triad = MeasureTriadBandwidth(probe_pool->get());
    // Only decode rows use it (and it allocates up to 1 GiB for a moment).
    if (std::any_of(tg->begin(), tg->end(), [](int64_t n) { return n > 0; }))
      read_bw = MeasureReadBandwidth(probe_pool->get(), read_probe_bytes);
    if (eo.mem_budget_bytes > 0 || eo.kv_mem_bytes > 0) {  // weights or KV may come from disk
      io::PosixStorageEnv env;
      auto f = env.OpenForRandomRead(model);
      if (f.ok()) {
        // Two passes over the same 512 MiB: the first is the device cold; the second is
        // what re-reading streamed weights every token gets (on a VM the host may cache).
        auto first = io::MeasureReadBandwidth(**f, 512ull << 20);
        auto again = io::MeasureReadBandwidth(**f, 512ull << 20);
        if (first.ok()) disk_first = first->bytes_per_second;
        if (again.ok()) disk = std::max(again->bytes_per_second, disk_first);
      }
    }
  }
  if (cold) {
    // Ask the kernel to drop this file's cached pages, so loading reads the disk.
    const int fd = ::open(model.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::fdatasync(fd);
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      ::close(fd);
    }
  }
  const auto t_load = std::chrono::steady_clock::now();
  auto engine = LoadEngineWithProgress(eo, quiet);
  if (!engine.ok()) return ReportError(engine.status());
  Engine& e = **engine;
  if (prefix_prompt > 0) {
    prefix_options.n_prompt = prefix_prompt;
    prefix_options.repetitions = reps;
    st = RunPrefixBench(e, prefix_options);
    return st.ok() ? 0 : ReportError(st);
  }
  double first_token_ms = 0;
  {
    // Time to first token of a one-token prompt, counted from the start of loading.
    const int32_t bos = 1 % static_cast<int32_t>(e.model().hparams().n_vocab);
    std::vector<float> first_logits;
    st = e.model().Forward(std::span<const int32_t>(&bos, 1), e.kv(), false, &first_logits, &e.pool());
    if (!st.ok()) return ReportError(st);
    first_token_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_load).count();
    e.kv().set_n_past(0);
  }
  const ModelHParams& hp = e.model().hparams();

  const uint64_t weights_per_token = DecodeWeightBytesPerToken(e.file());
  uint64_t model_bytes = 0, n_params = 0;
  for (const auto& t : e.file().tensors()) {
    model_bytes += t.size_bytes;
    n_params += static_cast<uint64_t>(t.n_elements());
  }
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok_dist(0, static_cast<int32_t>(hp.n_vocab - 1));
  std::vector<float> logits;
  std::vector<Row> rows;
  RoutingTrace trace;
  if (hp.n_expert > 0) trace = RoutingTrace(static_cast<int32_t>(hp.n_layer), static_cast<int32_t>(hp.n_expert),
                                            static_cast<int32_t>(hp.n_expert_used));
  std::vector<MoeLive> moe_live;
  // One progress line over every run (warm-ups included), labelled with the current test.
  int64_t n_tests = 0;
  for (int64_t p : *pp) n_tests += p > 0;
  for (int64_t n : *tg) n_tests += (n > 0) * (batch_seqs > 0 ? 2 : 1);
  n_tests *= static_cast<int64_t>(dd->size());
  Progress runs(ProgressOptions::FromEnvironment(quiet));
  runs.Start("bench", static_cast<uint64_t>(n_tests * (reps + 1)), Progress::Unit::kItems, "runs");
  // The context at depth d: random tokens prefilled once per test (not timed); each
  // repetition then drops what the previous one appended.
  auto fill_depth = [&](int64_t depth) -> Status {
    e.kv().set_n_past(0);
    if (depth == 0) return Status::Ok();
    std::vector<int32_t> toks(static_cast<size_t>(depth));
    for (auto& t : toks) t = tok_dist(rng);
    if (depth_fill == "random") return FillKvRandom(e, toks, rng());
    return e.model().Forward(toks, e.kv(), false, &logits, &e.pool());
  };
  auto run_test = [&](int64_t n_prompt, int64_t n_gen, int64_t depth) -> Status {
    Row r;
    r.n_prompt = n_prompt;
    r.n_gen = n_gen;
    r.n_depth = depth;
    r.test = n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
    if (depth > 0) r.test += " @ d" + std::to_string(depth);
    TIERLM_RETURN_IF_ERROR(fill_depth(depth));
    runs.SetLabel("bench " + r.test);
    ResidencyStats before;
    kv::KvTierStats kv_before;
    int64_t acquire_ns_before = 0;
    GateAheadStats gate_before;
    MoeCopyStats copies_before;
    const bool record = n_gen > 0 && hp.n_expert > 0;
    RoutingTrace test_trace;
    if (record) test_trace = RoutingTrace(trace.n_layer(), trace.n_expert(), trace.n_used());
    for (int rep = -1; rep < reps; ++rep) {  // rep -1 is the warm-up
      if (rep == 0 && e.tiered()) {
        before = e.tiered()->residency_stats();
        acquire_ns_before = e.tiered()->acquire_nanos();
      }
      if (rep == 0) kv_before = e.kv().paged().store().TierStats();
      if (rep == 0) e.model().reset_kv_read_stats();
      if (rep == 0) {
        gate_before = e.model().moe_ffn().gate_ahead_stats();
        copies_before = e.model().moe_ffn().copy_stats();
      }
      if (rep == 0 && record) e.model().moe_ffn().set_trace(&test_trace);
      e.kv().set_n_past(depth);
      std::vector<int32_t> toks(static_cast<size_t>(std::max<int64_t>(n_prompt, 1)));
      for (auto& t : toks) t = tok_dist(rng);
      const auto t0 = std::chrono::steady_clock::now();
      if (n_prompt > 0) {
        TIERLM_RETURN_IF_ERROR(e.model().Forward(toks, e.kv(), false, &logits, &e.pool()));
      } else {
        // Random tokens, as llama-bench's tg feeds: greedy decoding of a random-weight
        // model repeats one token, which would make routing (and any cache) trivial.
        for (int64_t i = 0; i < n_gen; ++i) {
          const int32_t tok = tok_dist(rng);
          TIERLM_RETURN_IF_ERROR(e.model().Forward(std::span<const int32_t>(&tok, 1), e.kv(), false, &logits, &e.pool()));
        }
      }
      const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
      runs.Advance();
      if (rep < 0) continue;
      r.samples_ns.push_back(ns);
      r.samples_ts.push_back((n_prompt > 0 ? n_prompt : n_gen) * 1e9 / ns);
    }
    if (record) {
      e.model().moe_ffn().set_trace(nullptr);
      MoeLive live;
      live.test = r.test;
      if (e.tiered()) {
        live.tiered = true;
        live.experts = e.tiered()->residency_stats().per_class[static_cast<int>(EntryClass::kExpert)];
        live.experts -= before.per_class[static_cast<int>(EntryClass::kExpert)];
        live.store_nanos = e.tiered()->acquire_nanos() - acquire_ns_before;
      }
      const GateAheadStats g = e.model().moe_ffn().gate_ahead_stats();
      live.gate_predicted = g.predicted - gate_before.predicted;
      live.gate_correct = g.correct - gate_before.correct;
      const MoeCopyStats c = e.model().moe_ffn().copy_stats();
      live.copies.full = c.full - copies_before.full;
      live.copies.lowbit = c.lowbit - copies_before.lowbit;
      live.tokens = test_trace.n_tokens();
      live.routing = ComputeRoutingStats(test_trace);
      Derive(live, disk);
      r.moe = true;
      r.moe_hit_rate = live.hit_rate;
      r.moe_read_ahead = live.read_ahead;
      r.moe_lowbit_share = live.lowbit_share;
      r.moe_gate_accuracy = live.gate_accuracy;
      r.moe_hidden_share = live.hidden_share;
      r.moe_consecutive_overlap = live.routing.consecutive_overlap;
      for (int64_t tok = 0; tok < test_trace.n_tokens(); ++tok) {
        std::vector<int32_t> ex;
        std::vector<float> wt;
        for (int32_t l = 0; l < test_trace.n_layer(); ++l)
          for (int32_t k = 0; k < test_trace.n_used(); ++k) {
            ex.push_back(test_trace.expert(tok, l, k));
            wt.push_back(test_trace.weight(tok, l, k));
          }
        TIERLM_RETURN_IF_ERROR(trace.AppendToken(ex.data(), wt.data()));
      }
      moe_live.push_back(live);
    }
    Summarize(r);
    if (n_gen > 0 && triad > 0) r.bw_limit_ts = triad / static_cast<double>(weights_per_token);
    if (n_gen > 0 && read_bw > 0 && !e.tiered()) r.read_limit_ts = read_bw / static_cast<double>(weights_per_token);
    const kv::KvTierStats kv_after = e.kv().paged().store().TierStats();
    if (n_gen > 0) {
      const LlamaModel::KvReadStats kr = e.model().kv_read_stats();
      const kv::PagedKvLayer lv = e.kv().paged().store().Layer(0);
      if (kr.total > 0) r.kv_blocks_read_share = static_cast<double>(kr.read) / static_cast<double>(kr.total);
      r.kv_attended_bytes_per_token = static_cast<double>(kr.read) * static_cast<double>(lv.block_size) *
                                      static_cast<double>(lv.k_pos_bytes + lv.v_pos_bytes) /
                                      (static_cast<double>(reps) * static_cast<double>(n_gen));
    }
    if (kv_after.tiered) {
      const double passes = static_cast<double>(reps) * (n_prompt > 0 ? 1 : n_gen);
      r.kv_tiered = true;
      r.kv_read_bytes_per_token = (kv_after.read_bytes - kv_before.read_bytes) / passes;
      r.kv_written_bytes_per_token = (kv_after.spilled_bytes - kv_before.spilled_bytes) / passes;
    }
    if (e.tiered()) {
      const ClassStats a = before.Total(), b = e.tiered()->residency_stats().Total();
      const double tokens = static_cast<double>(reps) * (n_prompt > 0 ? 1 : n_gen);  // passes over the weights
      const double total_ns = std::accumulate(r.samples_ns.begin(), r.samples_ns.end(), 0.0);
      r.tiered = true;
      r.read_bytes_per_token = (b.bytes_read - a.bytes_read) / tokens;
      r.stall_fraction = total_ns > 0 ? (e.tiered()->acquire_nanos() - acquire_ns_before) / total_ns : 0;
      const double acq = static_cast<double>(b.acquires - a.acquires);
      r.hit_rate = acq > 0 ? (b.hits - a.hits) / acq : 0;
      // The physical bound for this placement: memory-bound compute or the disk, whichever is slower.
      if (n_gen > 0 && triad > 0 && disk > 0) {
        const double compute_s = weights_per_token / triad;
        const double io_s = r.read_bytes_per_token / disk;
        r.bw_limit_ts = 1.0 / std::max(compute_s, io_s);
      }
    }
    rows.push_back(std::move(r));
    return Status::Ok();
  };
  // S sequences, each prefilled to the depth with its own random tokens, then decoding
  // one token each per forward pass: every weight is read once for all S rows.
  auto run_batch_test = [&](int64_t n_gen, int64_t depth, int64_t S) -> Status {
    Row r;
    r.n_gen = n_gen;
    r.n_depth = depth;
    r.n_seqs = S;
    r.test = "tg" + std::to_string(n_gen) + " x" + std::to_string(S) + (depth > 0 ? " @ d" + std::to_string(depth) : "");
    runs.SetLabel("bench " + r.test);
    kv::PagedKvOptions o;
    o.n_layer = hp.n_layer;
    o.n_head_kv = hp.n_head_kv;
    o.head_dim = hp.head_dim;
    o.format = eo.kv_format;
    const int64_t per_seq = (depth + n_gen + o.format.block_size - 1) / o.format.block_size + 1;
    o.n_blocks = static_cast<int32_t>(per_seq * S);
    TIERLM_ASSIGN_OR_RETURN(auto cache, kv::PagedKvCache::Create(o));
    for (kv::SeqId sq = 0; sq < S; ++sq)
      if (depth > 0) {
        std::vector<int32_t> toks(static_cast<size_t>(depth));
        for (auto& t : toks) t = tok_dist(rng);
        TIERLM_RETURN_IF_ERROR(cache->AddTokens(sq, toks));
        Batch b;
        for (int64_t i = 0; i < depth; ++i) b.Add(toks[static_cast<size_t>(i)], i, sq, i == depth - 1);
        TIERLM_RETURN_IF_ERROR(e.model().Forward(b, *cache, &logits, &e.pool()));
      }
    for (int rep = -1; rep < reps; ++rep) {
      for (kv::SeqId sq = 0; sq < S; ++sq)
        if (cache->blocks().HasSequence(sq)) TIERLM_RETURN_IF_ERROR(cache->Truncate(sq, depth));
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < n_gen; ++i) {
        Batch b;
        for (kv::SeqId sq = 0; sq < S; ++sq) {
          const int32_t tok = tok_dist(rng);
          TIERLM_RETURN_IF_ERROR(cache->AddTokens(sq, {&tok, 1}));
          b.Add(tok, depth + i, sq, true);
        }
        TIERLM_RETURN_IF_ERROR(e.model().Forward(b, *cache, &logits, &e.pool()));
      }
      const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
      runs.Advance();
      if (rep < 0) continue;
      r.samples_ns.push_back(ns);
      r.samples_ts.push_back(static_cast<double>(n_gen * S) * 1e9 / ns);
    }
    Summarize(r);
    rows.push_back(std::move(r));
    return Status::Ok();
  };
  for (int64_t d : *dd) {
    for (int64_t p : *pp)
      if (p > 0 && st.ok()) st = run_test(p, 0, d);
    for (int64_t n : *tg)
      if (n > 0 && st.ok()) {
        st = run_test(0, n, d);
        if (st.ok() && batch_seqs > 0) st = run_batch_test(n, d, batch_seqs);
      }
    if (!st.ok()) {
      runs.Stop();
      return ReportError(st);
    }
  }
  runs.Finish();

  KlResult kl;
  bool have_kl = false;
  if (hp.n_expert > 0 && eo.moe_miss != MoeMiss::kExact && e.tiered()) {
    auto k = MeasureMissKl(e, eo.moe_miss, 16, 99);
    if (!k.ok()) return ReportError(k.status());
    kl = *k;
    have_kl = true;
  }
  KlResult kv_kl;
  const bool lossy_kv = eo.kv_format.k_type != GgmlType::kF32 || eo.kv_format.v_type != GgmlType::kF32;
  if (lossy_kv) {
    const int64_t n = std::min<int64_t>(32, std::max<int64_t>(1, e.kv().n_ctx() / 2));
    auto k = MeasureKvKl(e, n, 77);
    if (!k.ok()) return ReportError(k.status());
    kv_kl = *k;
  }
  const std::string fname = std::filesystem::path(model).filename().string();
  const std::string type_desc = hp.arch_name + " " + std::to_string(hp.n_layer) + "L";
  if (output == "json") {
    std::printf("[\n");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      const double avg_ns = std::accumulate(r.samples_ns.begin(), r.samples_ns.end(), 0.0) / r.samples_ns.size();
      double var_ns = 0;
      for (double x : r.samples_ns) var_ns += (x - avg_ns) * (x - avg_ns);
      const double sd_ns = r.samples_ns.size() > 1 ? std::sqrt(var_ns / (r.samples_ns.size() - 1)) : 0;
      std::printf(
          "  {\"build_commit\": \"tierlm\", \"model_filename\": \"%s\", \"model_type\": \"%s\", \"model_size\": %llu, "
          "\"model_n_params\": %llu, \"n_threads\": %d, \"n_batch\": %lld, \"n_prompt\": %lld, \"n_gen\": %lld, "
          "\"n_depth\": %lld, \"n_seqs\": %lld, \"type_k\": \"%s\", \"type_v\": \"%s\", "
          "\"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ns\": %s, "
          "\"samples_ts\": %s, \"min_ts\": %.6f, \"median_ts\": %.6f, \"max_ts\": %.6f, \"triad_bytes_per_s\": %.0f, "
          "\"weight_bytes_per_token\": %llu, \"bw_limit_ts\": %.6f, \"bw_fraction\": %.4f, \"read_bytes_per_s\": %.0f, "
          "\"read_limit_ts\": %.6f, \"read_fraction\": %.4f, \"mem_budget\": %llu, "
          "\"read_bytes_per_pass\": %.0f, \"stall_fraction\": %.4f, \"hit_rate\": %.4f, \"disk_bytes_per_s\": %.0f%s}%s\n",
          fname.c_str(), type_desc.c_str(), static_cast<unsigned long long>(model_bytes),
          static_cast<unsigned long long>(n_params), e.pool().size(), static_cast<long long>(batch),
          static_cast<long long>(r.n_prompt), static_cast<long long>(r.n_gen), static_cast<long long>(r.n_depth),
          static_cast<long long>(r.n_seqs), kv_types.k.c_str(), kv_types.v.c_str(), avg_ns, sd_ns, r.avg_ts, r.stddev_ts,
          JsonList(r.samples_ns, true).c_str(), JsonList(r.samples_ts, false).c_str(), r.min_ts, r.median_ts, r.max_ts,
          triad, static_cast<unsigned long long>(weights_per_token), r.bw_limit_ts,
          r.bw_limit_ts > 0 ? r.avg_ts / r.bw_limit_ts : 0.0, read_bw, r.read_limit_ts,
          r.read_limit_ts > 0 ? r.avg_ts / r.read_limit_ts : 0.0, static_cast<unsigned long long>(eo.mem_budget_bytes),
          r.read_bytes_per_token, r.stall_fraction, r.hit_rate, disk, MoeJson(r, moe_miss, have_kl ? &kl : nullptr).c_str(),
          i + 1 < rows.size() ? "," : "");
    }
    std::printf("]\n");
    return 0;
  }
  if (output == "csv") {
    std::printf("model_filename,model_size,n_threads,n_prompt,n_gen,avg_ts,stddev_ts,min_ts,median_ts,max_ts,bw_fraction\n");
    for (const Row& r : rows)
      std::printf("%s,%llu,%d,%lld,%lld,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f\n", fname.c_str(),
                  static_cast<unsigned long long>(model_bytes), e.pool().size(), static_cast<long long>(r.n_prompt),
                  static_cast<long long>(r.n_gen), r.avg_ts, r.stddev_ts, r.min_ts, r.median_ts, r.max_ts,
                  r.bw_limit_ts > 0 ? r.avg_ts / r.bw_limit_ts : 0.0);
    return 0;
  }
  std::printf("| model | size | params | threads | test | t/s | min / median / max | of bandwidth limit |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Row& r : rows) {
    char limit[128] = "";
    if (r.bw_limit_ts > 0 && r.read_limit_ts > 0)
      std::snprintf(limit, sizeof limit, "%.0f%% of %.1f t/s (read: %.0f%% of %.1f)", 100 * r.avg_ts / r.bw_limit_ts,
                    r.bw_limit_ts, 100 * r.avg_ts / r.read_limit_ts, r.read_limit_ts);
    else if (r.bw_limit_ts > 0)
      std::snprintf(limit, sizeof limit, "%.0f%% of %.1f t/s", 100 * r.avg_ts / r.bw_limit_ts, r.bw_limit_ts);
    std::printf("| %s | %.2f MiB | %.2f B | %d | %s | %.2f ± %.2f | %.2f / %.2f / %.2f | %s |\n", fname.c_str(),
                model_bytes / 1048576.0, n_params / 1e9, e.pool().size(), r.test.c_str(), r.avg_ts, r.stddev_ts,
                r.min_ts, r.median_ts, r.max_ts, limit);
  }
  for (const Row& r : rows)
    if (r.tiered)
      std::printf("%s under --mem-budget %s: %.1f MiB read from disk per %s, %.0f%% of the time waiting on reads, "
                  "hit rate %.1f%%\n",
                  r.test.c_str(), budget_text.c_str(), r.read_bytes_per_token / 1048576.0,
                  r.n_prompt > 0 ? "prompt" : "token", 100 * r.stall_fraction, 100 * r.hit_rate);
  for (const Row& r : rows)
    if (r.kv_tiered) {
      std::printf("%s: KV cache tiered (%s in memory): %.1f MiB read back from the spill file and %.1f MiB written per "
                  "%s", r.test.c_str(), FormatBytes(e.kv().paged().store().TierStats().budget_bytes).c_str(),
                  r.kv_read_bytes_per_token / 1048576.0, r.kv_written_bytes_per_token / 1048576.0,
                  r.n_prompt > 0 ? "prompt" : "token");
      if (r.n_gen > 0 && disk > 0 && r.kv_read_bytes_per_token > 0) {
        const double bound = disk / r.kv_read_bytes_per_token;
        std::printf("; at the disk's %.2f GB/s that bounds decode at %.2f t/s: measured %.0f%% of it (at 1.2 GB/s: "
                    "%.2f t/s)", disk / 1e9, bound, 100 * r.avg_ts / bound, 1.2e9 / r.kv_read_bytes_per_token);
      }
      std::printf("\n");
    }
  if (eo.kv_sparse.mode != kv::KvSparseMode::kExact)
    for (const Row& r : rows)
      if (r.n_gen > 0)
        std::printf("%s: --kv-sparse %s, budget %lld tokens: %.1f%% of the KV blocks read per step, %.2f MiB of KV "
                    "attended per token\n",
                    r.test.c_str(), kv::KvSparseModeName(eo.kv_sparse.mode),
                    static_cast<long long>(eo.kv_sparse.budget_tokens), 100 * r.kv_blocks_read_share,
                    r.kv_attended_bytes_per_token / 1048576.0);
  std::printf("%s start: load %.0f ms, first token %.0f ms after the start of loading\n", cold ? "cold" : "warm",
              e.load_ms(), first_token_ms);
  if (disk > 0)
    std::printf("disk read bandwidth (O_DIRECT, same run): %.2f GB/s first read, %.2f GB/s re-read (the bound uses the "
                "re-read)\n", disk_first / 1e9, disk / 1e9);
  if (triad > 0)
    std::printf("\nmemory bandwidth (triad, %d threads): %.1f GB/s; decode reads %.1f MiB of weights per token\n",
                e.pool().size(), triad / 1e9, weights_per_token / 1048576.0);
  if (read_bw > 0)
    std::printf("memory read bandwidth (a pure read of %.0f MiB, %d threads): %.1f GB/s\n",
                read_probe_bytes / 1048576.0, e.pool().size(), read_bw / 1e9);
  if (!moe_live.empty()) {
    std::printf("\n");
    PrintMoeSummary(e, moe_live);
  }
  if (have_kl)
    std::printf("--moe-miss %s vs exact over %lld random tokens: mean KL %.4g nats (max %.4g), top-1 agreement %.1f%%\n",
                moe_miss.c_str(), static_cast<long long>(kl.tokens), kl.mean_kl, kl.max_kl, 100 * kl.top1_agree);
  if (lossy_kv)
    std::printf("KV cache -ctk %s -ctv %s vs f32 over %lld positions (a random prompt, then decode): mean KL %.4g nats "
                "(max %.4g), top-1 agreement %.1f%%\n",
                kv_types.k.c_str(), kv_types.v.c_str(), static_cast<long long>(kv_kl.tokens), kv_kl.mean_kl,
                kv_kl.max_kl, 100 * kv_kl.top1_agree);
  if (!e.lowbit_note().empty()) std::printf("%s\n", e.lowbit_note().c_str());
  if (moe_report) {
    if (hp.n_expert == 0) {
      std::printf("\n--moe-report: %s has no experts\n", fname.c_str());
    } else {
      st = PrintMoeSimulation(e, trace);
      if (!st.ok()) return ReportError(st);
    }
  }
  return 0;
}

}  // namespace tierlm::cli
