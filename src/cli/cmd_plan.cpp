// tierlm plan: where every tensor lives under a memory budget, and the speed that follows
// from the bytes each tier must move per token (bandwidths measured now, on this machine).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cli/args.h"
#include "cli/kv_options.h"
#include "model/hparams.h"
#include "cli/commands.h"
#include "core/memory_bandwidth.h"
#include "core/thread_pool.h"
#include "kernels/attention_rate.h"
#include "io/posix_storage_env.h"
#include "io/read_bandwidth.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"

namespace tierlm::cli {

int PlanCommand(int argc, char** argv) {
  ArgParser ap("plan");
  std::string model, budget_text;
  int64_t n_ctx = 0, n_batch = 512;
  int32_t threads = 0;
  bool all = false, no_measure = false;
  ap.Add({"-m", "--model"}, &model, "GGUF model file");
  ap.Add({"--mem-budget"}, &budget_text, "bound on all engine memory, e.g. 6G (default: unlimited)");
  KvTypeFlags kv_types;
  AddKvTypeOptions(ap, &kv_types);
  ap.Add({"-c", "--ctx-size"}, &n_ctx, "context size; 0: the model's, at most 4096 (default 0)");
  ap.Add({"-b", "--batch-size"}, &n_batch, "prompt tokens per batch, at least 1, at most -c (default 512)");
  ap.Add({"-t", "--threads"}, &threads, "threads, at most 1024 (default and <= 0: all cores)");
  int32_t n_slots = 0;
  ap.Add({"-np", "--parallel"}, &n_slots,
         "as tierlm serve -np: how -c divides among this many slots (default 0: not a server)");
  ap.Flag({"--tensors"}, &all, "list every tensor (default: a summary per kind)");
  ap.Flag({"--no-measure"}, &no_measure, "do not measure DRAM and disk bandwidth (no prediction)");
  bool quiet = false;  // plan reads no weights: it has no progress lines to silence
  ap.Flag({"-q", "--quiet"}, &quiet, "print no progress lines (accepted as by run and bench; plan prints none)");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (model.empty()) return ReportError(Status::InvalidArgument("plan: -m MODEL.gguf is required"));
  if (n_ctx < 0) return ReportError(Status::InvalidArgument("context size (-c) must not be negative (0: the model's)"));
  if (n_batch <= 0) return ReportError(Status::InvalidArgument("batch size (-b) must be positive"));
  if (n_slots < 0 || n_slots > 1024) return ReportError(Status::InvalidArgument("-np must be in 0..1024"));
  auto resolved_threads = ResolveThreadCount(threads);
  if (!resolved_threads.ok()) return ReportError(resolved_threads.status());
  NoteThreads(threads);
  const int n_threads = *resolved_threads;
  uint64_t budget = 0;
  if (!budget_text.empty()) {
    auto b = ParseByteSize(budget_text);
    if (!b.ok()) return ReportError(b.status().WithContext("--mem-budget"));
    if (*b == 0) return ReportError(Status::InvalidArgument("--mem-budget must be positive"));
    budget = *b;
  }
  auto file = gguf::GgufFile::Open(model);
  if (!file.ok()) return ReportError(file.status());
  auto hp = ModelHParams::FromGguf(*file);
  if (!hp.ok()) return ReportError(hp.status());
  if (n_ctx == 0) n_ctx = std::min<int64_t>(hp->n_ctx_train, 4096);
  n_batch = std::min(n_batch, n_ctx);
  kv::KvFormat kv_format;
  uint64_t kv_mem = 0;
  st = ApplyKvTypes(kv_types, &kv_format, &kv_mem);
  if (st.ok()) st = kv::CheckKvType(kv_format.k_type, hp->head_dim, "-ctk");
  if (st.ok()) st = kv::CheckKvType(kv_format.v_type, hp->head_dim, "-ctv");
  if (!st.ok()) return ReportError(st);
  auto plan = PlanMemory(*file, *hp, n_ctx, n_batch, n_threads, budget, kv_format, kv_mem);
  if (!plan.ok()) return ReportError(plan.status());
  const WeightPlacement& p = plan->placement;

  std::printf("model: %s (%s, %lld layers, %s of tensors)\n", model.c_str(), hp->arch_name.c_str(),
              static_cast<long long>(hp->n_layer), FormatBytes(p.total_bytes).c_str());
  std::printf("%s\n\n", plan->ToString().c_str());

  // Where each kind of tensor lives.
  struct Kind {
    uint64_t pinned = 0, streamed = 0;
    int n_pinned = 0, n_streamed = 0;
  };
  std::vector<std::pair<std::string, Kind>> kinds;
  auto kind_of = [](const std::string& name) {
    std::string k = name;
    if (k.rfind("blk.", 0) == 0) k = k.substr(k.find('.', 4) + 1);
    if (auto hash = k.find('#'); hash != std::string::npos) k = k.substr(0, hash);
    return k;
  };
  for (const auto& u : p.units) {
    const std::string k = kind_of(u.name);
    auto it = std::find_if(kinds.begin(), kinds.end(), [&](const auto& e) { return e.first == k; });
    if (it == kinds.end()) {
      kinds.push_back({k, {}});
      it = kinds.end() - 1;
    }
    if (u.pinned || budget == 0) {
      it->second.pinned += u.slot_bytes;
      it->second.n_pinned++;
    } else {
      it->second.streamed += u.slot_bytes;
      it->second.n_streamed++;
    }
  }
  std::printf("%-28s %14s %14s\n", "tensor kind", "in memory", "streamed");
  for (const auto& [k, v] : kinds)
    std::printf("%-28s %8s (%3d) %8s (%3d)\n", k.c_str(), FormatBytes(v.pinned).c_str(), v.n_pinned,
                FormatBytes(v.streamed).c_str(), v.n_streamed);
  if (all) {
    std::printf("\n%-44s %12s  %s\n", "tensor", "bytes", "where");
    for (const auto& u : p.units)
      std::printf("%-44s %12s  %s\n", u.name.c_str(), FormatBytes(u.size).c_str(),
                  u.pinned || budget == 0 ? "memory (pinned)" : "streamed from disk");
  }

  const uint64_t per_token = DecodeWeightBytesPerToken(*file);
  uint64_t streamed = budget == 0 ? 0 : p.streamed_bytes_per_token;
  // Experts: a token runs n_used of n_expert per layer; the expert cache (what the pinned
  // set leaves) holds a share of them. Under routing spread evenly over the experts, that
  // share is the hit rate (tierlm bench --moe-report measures the real one).
  uint64_t expert_bytes = 0;
  for (const auto& u : p.units)
    if (u.expert && !u.pinned) expert_bytes += u.slot_bytes;
  if (budget > 0 && expert_bytes > 0 && hp.ok() && hp->n_expert > 0) {
    const double per_token_experts = static_cast<double>(expert_bytes) * hp->n_expert_used / hp->n_expert;
    const double cached = std::min(1.0, static_cast<double>(p.ring_bytes) / static_cast<double>(expert_bytes));
    streamed = streamed - expert_bytes + static_cast<uint64_t>(per_token_experts * (1.0 - cached));
    std::printf("\nexperts: %s streamed per token if none were cached; the expert cache (%s) holds %.0f%% of them, "
                "so about %.0f%% of expert reads hit if routing is spread evenly\n",
                FormatBytes(static_cast<uint64_t>(per_token_experts)).c_str(), FormatBytes(p.ring_bytes).c_str(),
                100 * cached, 100 * cached);
  }
  std::printf("\nper generated token: %s of weights read, %s of them from disk\n", FormatBytes(per_token).c_str(),
              FormatBytes(streamed).c_str());
  // At the full context, each token also reads every position's keys and values.
  const uint64_t kv_per_token = plan->kv_bytes;
  // A tiered cache under the MRU policy keeps a stable share resident and reads the rest
  // back every token (and writes each token's new block once).
  const uint64_t kv_disk_per_token =
      plan->kv_tiered && plan->kv_spill_bytes > plan->kv_memory_bytes ? plan->kv_spill_bytes - plan->kv_memory_bytes : 0;
  if (plan->kv_tiered) {
    std::printf("KV cache: -ctk %s -ctv %s, %s for -c %lld: tiered, %s resident in memory, %s spilled to disk "
                "(a private file in %s); a token at depth %lld reads all of it, %s of it from disk\n",
                kv_types.k.c_str(), kv_types.v.c_str(), FormatBytes(plan->kv_spill_bytes).c_str(),
                static_cast<long long>(n_ctx), FormatBytes(plan->kv_memory_bytes).c_str(),
                FormatBytes(kv_disk_per_token).c_str(),
                kv_types.spill_dir.empty() ? Engine::DefaultSpillDir(model).c_str() : kv_types.spill_dir.c_str(),
                static_cast<long long>(n_ctx), FormatBytes(kv_disk_per_token).c_str());
  } else {
    std::printf("KV cache: -ctk %s -ctv %s, %s for -c %lld, all in memory; a token at depth %lld reads all of it\n",
                kv_types.k.c_str(), kv_types.v.c_str(), FormatBytes(kv_per_token).c_str(), static_cast<long long>(n_ctx),
                static_cast<long long>(n_ctx));
  }
  if (n_slots > 0) {
    // serve's division (cmd_serve.cpp): -c / -np positions per slot, in whole blocks.
    int64_t per_slot = n_ctx / n_slots;
    if (per_slot >= kv_format.block_size) per_slot -= per_slot % kv_format.block_size;
    if (per_slot < 1)
      return ReportError(Status::InvalidArgument("-c " + std::to_string(n_ctx) + " is too small for -np " +
                                                 std::to_string(n_slots)));
    std::printf("serve -np %d: %d slots of %lld positions each (a request's prompt and reply), sharing the KV "
                "cache above\n",
                n_slots, n_slots, static_cast<long long>(per_slot));
  }
  if (no_measure) return 0;

  auto pool = ThreadPool::Create(n_threads);
  if (!pool.ok()) return ReportError(pool.status());
  const double dram = MeasureTriadBandwidth(pool->get());
  double disk = 0;
  io::PosixStorageEnv env;
  auto f = env.OpenForRandomRead(model);
  if (f.ok()) {
    auto bw = io::MeasureReadBandwidth(**f, 512ull << 20);
    if (bw.ok()) disk = bw->bytes_per_second;
    else std::printf("note: could not measure disk bandwidth: %s\n", bw.status().message().c_str());
  }
  // Attention at depth n_ctx: the paged decode kernel's rate on this machine, measured at
  // up to 4096 keys read from DRAM (its arithmetic and its reads of the keys and values,
  // which it overlaps), scaled to n_ctx keys; then the weights read once. The KV bytes
  // appear apart as their DRAM read time, already inside the attention time.
  const AttentionShape shape{hp->n_head, hp->n_head_kv, hp->head_dim,
                             1.0f / std::sqrt(static_cast<float>(hp->head_dim))};
  auto rate = MeasurePagedDecodeRate(shape, kv_format, std::min<int64_t>(n_ctx, 4096), pool->get());
  if (!rate.ok()) return ReportError(rate.status().WithContext("plan: measuring attention"));
  const double attn_s = static_cast<double>(hp->n_layer) * DecodeAttentionFlops(shape, n_ctx) / *rate;
  const double weights_s = per_token / dram, kv_s = kv_per_token / dram;
  const double compute_s = weights_s + std::max(kv_s, attn_s);
  const double io_s = disk > 0 ? (streamed + kv_disk_per_token) / disk : 0;
  std::printf("measured: DRAM %.1f GB/s (triad, %d threads), disk %.2f GB/s (%s), decode attention %.1f GFLOP/s\n",
              dram / 1e9, n_threads, disk / 1e9,
              f.ok() ? ((*f)->stats().direct_io ? "O_DIRECT" : "buffered") : "unavailable", *rate / 1e9);
  const char* bound = io_s > compute_s ? "disk" : attn_s > weights_s ? "attention" : "memory bandwidth";
  std::printf("predicted decode at depth %lld: %.2f tokens/s (bound by %s: per token %.2f ms reading weights, "
              "%.2f ms reading KV, %.2f ms attention with those reads; %.2f ms disk)\n",
              static_cast<long long>(n_ctx), 1.0 / std::max(compute_s, io_s), bound, weights_s * 1e3, kv_s * 1e3,
              attn_s * 1e3, io_s * 1e3);
  return 0;
}

}  // namespace tierlm::cli
