#include "cli/bench_prefix.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "core/format_bytes.h"
#include "prefix/disk_block_tier.h"
#include "prefix/prefix_cache.h"
#include "prefix/redis_block_tier.h"

namespace tierlm::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  double ttft_ms = 0;
  int64_t reused = 0;
  double load_ms = 0;
};

// One request as a server runs it: reuse what `pc` holds (none when null), prefill the
// rest in batches, then the prompt's logits: time to first token (sampling is noise).
Result<Sample> FirstToken(Engine& e, prefix::PrefixCache* pc, const std::vector<int32_t>& prompt) {
  kv::PagedKvCache& cache = e.kv().paged();
  cache.Free(KvCache::kSeq);
  Sample s;
  std::vector<float> logits;
  const auto t0 = Clock::now();
  std::span<const int32_t> rest = prompt;
  if (pc) {
    TIERLM_ASSIGN_OR_RETURN(const prefix::PrefixHit hit, pc->Attach(cache, KvCache::kSeq, prompt, 0));
    s.reused = hit.tokens();
    s.load_ms = hit.load_ms;
    rest = rest.subspan(static_cast<size_t>(hit.tokens()));
  } else {
    TIERLM_RETURN_IF_ERROR(cache.blocks().Open(KvCache::kSeq, 0));
  }
  const size_t batch = static_cast<size_t>(e.model().max_batch());
  for (size_t at = 0; at < rest.size(); at += batch) {
    const auto chunk = rest.subspan(at, std::min(batch, rest.size() - at));
    TIERLM_RETURN_IF_ERROR(e.model().Forward(chunk, e.kv(), false, &logits, &e.pool()));
  }
  s.ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  return s;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

struct Line {
  std::string name;
  std::vector<Sample> samples;
};

std::unique_ptr<prefix::BlockTier> OpenDisk(const std::string& dir, Status* st) {
  prefix::DiskTierOptions d;
  d.dir = dir;
  d.capacity_bytes = 20ull << 30;
  auto t = prefix::DiskBlockTier::Open(d);
  if (!t.ok()) {
    *st = t.status().WithContext("bench --prefix: the disk tier");
    return nullptr;
  }
  return std::move(*t);
}

std::unique_ptr<prefix::BlockTier> OpenRedis(const std::string& url, Status* st) {
  prefix::RedisTierOptions r;
  r.url = url;
  r.io_timeout_s = 10;
  auto t = prefix::RedisBlockTier::Open(r);
  if (!t.ok()) {
    *st = t.status().WithContext("bench --prefix: --redis");
    return nullptr;
  }
  return std::move(*t);
}

}  // namespace

Status RunPrefixBench(Engine& e, const PrefixBenchOptions& o) {
  if (o.n_prompt < 2) return Status::InvalidArgument("bench --prefix: the prompt needs at least 2 tokens");
  if (o.n_prompt > e.kv().n_ctx())
    return Status::InvalidArgument("bench --prefix: a prompt of " + std::to_string(o.n_prompt) +
                                   " tokens does not fit the context of " + std::to_string(e.kv().n_ctx()));
  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  const auto n_vocab = static_cast<uint64_t>(e.model().hparams().n_vocab);
  prompt[0] = 1;
  for (size_t i = 1; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(3 + rng() % (n_vocab - 3));

  std::string dir = o.dir;
  const bool own_dir = dir.empty();
  if (own_dir) {
    std::string base = std::filesystem::path(e.file().name()).parent_path().string();
    if (base.empty() || ::access(base.c_str(), W_OK) != 0) base = std::filesystem::temp_directory_path().string();
    dir = base + "/tierlm-bench-prefix-" + std::to_string(::getpid());
  }
  kv::KvBlockManager& bm = e.kv().paged().blocks();
  const uint64_t payload = e.kv().paged().store().block_payload_bytes();
  const int64_t full_blocks = (o.n_prompt - 1) / bm.block_size();
  Status st;

  Line cold{"cold", {}}, mem{"warm, memory (same process)", {}}, disk{"warm, disk (after a restart)", {}},
      redis{"warm, Redis (another instance)", {}};
  // Fill the lower tiers once, from a cold run that publishes (its time is the cost of
  // publishing: the copies out of the cache; the writes are in the background).
  {
    std::unique_ptr<prefix::BlockTier> d = OpenDisk(dir, &st);
    if (!d) return st;
    std::unique_ptr<prefix::BlockTier> r;
    if (!o.redis_url.empty() && !(r = OpenRedis(o.redis_url, &st))) return st;
    prefix::PrefixCache pc(std::move(d), std::move(r), /*memory=*/true);
    bm.DropCached();
    TIERLM_ASSIGN_OR_RETURN(Sample s, FirstToken(e, &pc, prompt));
    if (s.reused != 0) return Status::Internal("bench --prefix: the first run found a prefix in a fresh cache");
    pc.Publish(e.kv().paged(), KvCache::kSeq);
    pc.Flush();
    // Warm from memory: the blocks are still in the paged cache.
    for (int r = 0; r < o.repetitions; ++r) {
      TIERLM_ASSIGN_OR_RETURN(Sample m, FirstToken(e, &pc, prompt));
      mem.samples.push_back(m);
    }
  }  // the disk tier closes: its index is written
  for (int r = 0; r < o.repetitions; ++r) {
    // Cold: nothing reused.
    bm.DropCached();
    TIERLM_ASSIGN_OR_RETURN(Sample c, FirstToken(e, nullptr, prompt));
    cold.samples.push_back(c);
    // A restart: a new disk tier on the directory, nothing in memory.
    {
      std::unique_ptr<prefix::BlockTier> d = OpenDisk(dir, &st);
      if (!d) return st;
      prefix::PrefixCache pc(std::move(d), nullptr, /*memory=*/false);
      bm.DropCached();
      TIERLM_ASSIGN_OR_RETURN(Sample s, FirstToken(e, &pc, prompt));
      disk.samples.push_back(s);
    }
    // Another instance: its own Redis connection, no disk, nothing in memory.
    if (!o.redis_url.empty()) {
      std::unique_ptr<prefix::BlockTier> t = OpenRedis(o.redis_url, &st);
      if (!t) return st;
      prefix::PrefixCache pc(nullptr, std::move(t), /*memory=*/false);
      bm.DropCached();
      TIERLM_ASSIGN_OR_RETURN(Sample s, FirstToken(e, &pc, prompt));
      redis.samples.push_back(s);
    }
  }
  bm.DropCached();
  e.kv().paged().Free(KvCache::kSeq);
  if (own_dir) std::filesystem::remove_all(dir);

  const double cold_ms = [&] {
    std::vector<double> v;
    for (const Sample& s : cold.samples) v.push_back(s.ttft_ms);
    return Median(v);
  }();
  std::printf("\nprefix cache: time to first token of a %lld-token prompt (%lld full blocks of %d, %s each; "
              "median of %d)\n\n",
              static_cast<long long>(o.n_prompt), static_cast<long long>(full_blocks), bm.block_size(),
              FormatBytes(payload).c_str(), o.repetitions);
  std::printf("| start | reused tokens | KV bytes loaded | load ms | TTFT ms (min .. max) | vs cold | at 1.2 GB/s |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Line* l : {&cold, &mem, &disk, &redis}) {
    if (l->samples.empty()) {
      if (l == &redis) std::printf("| %s | - | - | - | (no --redis) | - | - |\n", l->name.c_str());
      continue;
    }
    std::vector<double> t, ld;
    for (const Sample& s : l->samples) {
      t.push_back(s.ttft_ms);
      ld.push_back(s.load_ms);
    }
    const int64_t reused = l->samples.front().reused;
    const uint64_t bytes = l == &mem || l == &cold ? 0 : static_cast<uint64_t>(reused / bm.block_size()) * payload;
    const double med = Median(t);
    // What the loaded bytes would cost from a 1.2 GB/s SSD instead of this VM's cache.
    const double at_ssd = bytes ? med - Median(ld) + static_cast<double>(bytes) / 1.2e6 : med;
    std::printf("| %s | %lld | %s | %.1f | %.1f (%.1f .. %.1f) | %.1fx | %.1f ms |\n", l->name.c_str(),
                static_cast<long long>(reused), bytes ? FormatBytes(bytes).c_str() : "-", Median(ld), med,
                *std::min_element(t.begin(), t.end()), *std::max_element(t.begin(), t.end()),
                med > 0 ? cold_ms / med : 0, at_ssd);
  }
  return Status::Ok();
}

}  // namespace tierlm::cli
