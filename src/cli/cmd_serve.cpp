// tierlm serve: the OpenAI-compatible server (src/server/), llama-server's flags.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/default_model.h"
#include "cli/kv_options.h"
#include "cli/load_progress.h"
#include "cli/prefix_options.h"
#include "kernels/matmul.h"
#include "runtime/chat_template.h"
#include "runtime/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "tiers/tiered_weight_store.h"

namespace tierlm::cli {

int ServeCommand(int argc, char** argv) {
  EngineOptions eo;
  server::HttpOptions ho;
  int32_t n_slots = 4;
  int64_t step_tokens = 512;
  int64_t max_queue = 256;
  int64_t max_body = static_cast<int64_t>(ho.max_body_bytes);
  int32_t max_conn = ho.max_connections;
  float timeout_s = static_cast<float>(ho.request_timeout_s);
  std::string mem_budget, chat_template, alias;
  bool quiet = false, kv_unified = false;
  KvTypeFlags kv_types;
  PrefixFlags prefix_flags;
  int64_t port = ho.port;
  int32_t max_n = ho.limits.max_n;
  int64_t max_messages = static_cast<int64_t>(ho.limits.max_messages);

  ArgParser ap("serve");
  ap.Add({"-m", "--model"}, &eo.model_path, "GGUF model file (default: the built-in stories260K)");
  ap.Add({"--host"}, &ho.host, "address to listen on (default 127.0.0.1: this machine only)");
  ap.Add({"--port"}, &port, "port to listen on; 0: any free one, printed at start (default 8080)");
  ap.Add({"-np", "--parallel"}, &n_slots, "sequences generated at once (default 4)");
  ap.Add({"-c", "--ctx-size"}, &eo.n_ctx,
         "KV cache positions in all, shared by the -np slots (as llama-server: each request gets -c / -np); "
         "0: the model's, at most 4096 (default 0)");
  ap.Flag({"-kvu", "--kv-unified"}, &kv_unified,
          "one pool of KV blocks for all slots (as llama-server): a request may use all -c positions, requests are "
          "admitted by the blocks free now, and the newest is preempted (recomputed later, same tokens) when they run out");
  ap.Add({"-t", "--threads"}, &eo.n_threads, "compute threads (default and <= 0: all cores)");
  ap.Add({"-b", "--batch-size"}, &step_tokens, "tokens per step: decode tokens first, prefill chunks in the rest (default 512)");
  ap.Add({"--api-key"}, &ho.api_key, "require 'Authorization: Bearer KEY' on every route but /health");
  ap.Add({"--cors-origin"}, &ho.cors_origin, "send CORS headers allowing this origin ('*': any) (default: no CORS)");
  ap.Add({"--alias"}, &alias, "the model's id in the API (default: the file name without .gguf)");
  ap.Add({"--chat-template"}, &chat_template,
         "template: chatml, llama2, llama3, mistral, zephyr, phi3, gemma (default: from the model, else chatml)");
  ap.Add({"--mem-budget"}, &mem_budget, "bound on the engine's memory, e.g. 6G; weights beyond it stream from disk");
  AddKvTypeOptions(ap, &kv_types);
  AddPrefixOptions(ap, &prefix_flags, /*with_off=*/true);
  ap.Add({"--max-queue"}, &max_queue, "requests waiting for a slot; more are answered 503 (default 256)");
  ap.Add({"--max-body"}, &max_body, "largest request body in bytes; larger: 413 (default 4194304)");
  ap.Add({"--max-connections"}, &max_conn, "connections served at once; more: 503 (default 64)");
  ap.Add({"--max-n"}, &max_n, "largest n (choices per request) (default 8)");
  ap.Add({"--max-messages"}, &max_messages, "most messages in a chat request (default 1024)");
  ap.Add({"--timeout"}, &timeout_s, "seconds a request may take before it is cut off (504) (default 600)");
  ap.Flag({"-q", "--quiet"}, &quiet, "no progress lines while loading");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (port < 0 || port > 65535) return ReportError(Status::InvalidArgument("--port " + std::to_string(port) + ": must be 0..65535"));
  if (n_slots <= 0 || n_slots > 1024) return ReportError(Status::InvalidArgument("-np must be in 1..1024"));
  if (step_tokens <= 0) return ReportError(Status::InvalidArgument("-b must be positive"));
  if (max_queue < 0) return ReportError(Status::InvalidArgument("--max-queue must not be negative"));
  if (max_body <= 0) return ReportError(Status::InvalidArgument("--max-body must be positive"));
  if (max_conn <= 0 || max_conn > 4096) return ReportError(Status::InvalidArgument("--max-connections must be in 1..4096"));
  if (max_n <= 0) return ReportError(Status::InvalidArgument("--max-n must be positive"));
  if (max_messages <= 0) return ReportError(Status::InvalidArgument("--max-messages must be positive"));
  if (!(timeout_s > 0)) return ReportError(Status::InvalidArgument("--timeout must be positive"));
  if (Status t = ResolveThreadCount(eo.n_threads).status(); !t.ok()) return ReportError(t);
  std::optional<ChatTemplate> tmpl;
  if (!chat_template.empty()) {
    tmpl = ParseChatTemplateName(chat_template);
    if (!tmpl) return ReportError(Status::InvalidArgument("--chat-template: unknown template '" + chat_template + "'"));
  }
  if (!mem_budget.empty()) {
    auto budget = ParseByteSize(mem_budget);
    if (!budget.ok()) return ReportError(budget.status().WithContext("--mem-budget"));
    if (*budget == 0) return ReportError(Status::InvalidArgument("--mem-budget must be positive"));
    eo.mem_budget_bytes = *budget;
  }
  if (Status k = ApplyKvTypes(kv_types, &eo.kv_format); !k.ok()) return ReportError(k);
  if (Status k = ApplyKvSparse(kv_types, &eo.kv_sparse); !k.ok()) return ReportError(k);
  if (Status k = ApplyKvEvict(kv_types, &eo.kv_evict); !k.ok()) return ReportError(k);
  const bool evict = eo.kv_evict.mode != kv::KvEvictMode::kNone;
  if (evict) {
    // What a bounded sequence keeps depends on which positions it observed: a prefix
    // reused from another request would make a request's tokens depend on the requests
    // before it. Under --kv-evict every prompt is computed.
    if (!prefix_flags.dir.empty() || !prefix_flags.redis.empty())
      return ReportError(Status::InvalidArgument(
          "--kv-evict and a prefix cache (--prefix-cache-dir / --redis) do not combine: an evicting sequence "
          "computes its whole prompt"));
    if (kv_unified) return ReportError(Status::InvalidArgument("--kv-evict and --kv-unified do not combine: choose one"));
    prefix_flags.off = true;
    eo.kv_evict_sequences = n_slots;  // the cache holds -np bounded sequences
  }
  if (eo.model_path.empty()) {
    auto path = EnsureDefaultModel(false);
    if (!path.ok()) return ReportError(path.status());
    eo.model_path = *path;
  }
  ho.port = static_cast<int>(port);
  ho.max_body_bytes = static_cast<size_t>(max_body);
  ho.max_connections = max_conn;
  ho.request_timeout_s = timeout_s;
  ho.limits.max_n = std::min(max_n, n_slots);
  ho.limits.max_messages = static_cast<size_t>(max_messages);

  // The matmul kernels are batch-invariant (kernels/matmul.h): a greedy request gives the
  // same tokens alone or in any batch.

  // SIGINT / SIGTERM stop the server from one thread that waits for them; a client that
  // goes away must not kill the process with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // The prefix cache's directory and Redis URL are checked before the model loads (its
  // writer threads start here, after the stop signals are blocked: they never take them).
  // Prompt prefixes are kept in memory unless --no-prefix-cache.
  auto prefix_cache = OpenPrefixFromFlags(prefix_flags, /*memory_by_default=*/true);
  if (!prefix_cache.ok()) return ReportError(prefix_cache.status());

  server::Metrics metrics;
  server::HttpServer http(ho, &metrics);
  if (Status b = http.Bind(); !b.ok()) return ReportError(b);
  std::fprintf(stderr, "serve: listening on http://%s:%d (loading %s)\n", ho.host.c_str(), http.port(),
               eo.model_path.c_str());
  std::thread io([&] { http.Serve(); });
  // Set once the scheduler runs: a stop signal ends its requests (503) so that no HTTP
  // thread waits for a generation that will not come.
  std::atomic<server::Scheduler*> running_scheduler{nullptr};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (server::Scheduler* s = running_scheduler.load()) {
      s->Shutdown();
      http.Drain(0.5);  // the ended streams' last events reach their clients
    }
    http.Stop();
  });
  auto finish = [&](int code) {
    http.Stop();
    io.join();
    pthread_kill(waiter.native_handle(), SIGTERM);  // wakes the waiter if no signal came
    waiter.join();
    return code;
  };

  eo.n_batch = step_tokens;
  auto engine = LoadEngineWithProgress(eo, quiet);
  if (!engine.ok()) {
    ReportError(engine.status());
    return finish(2);
  }
  Engine& e = **engine;
  if (!tmpl) {
    tmpl = DetectChatTemplate(e.tokenizer().vocab().chat_template);
    if (!tmpl) {
      std::fprintf(stderr, "serve: the model has no recognised chat template; chat uses chatml\n");
      tmpl = ChatTemplate::kChatml;
    }
  }
  // The engine's KV cache (-c positions, within --mem-budget) is the server's: -np slots of
  // -c / -np positions each, in whole blocks; or, unified, one pool any request may fill.
  server::SchedulerOptions so;
  so.n_slots = n_slots;
  so.unified = kv_unified;
  so.n_ctx = kv_unified ? e.kv().n_ctx() : e.kv().n_ctx() / n_slots;
  const int64_t bs = e.kv().paged().blocks().block_size();
  if (so.n_ctx >= bs) so.n_ctx -= so.n_ctx % bs;
  if (so.n_ctx < 1) {
    ReportError(Status::InvalidArgument("-c " + std::to_string(e.kv().n_ctx()) + " is too small for -np " +
                                        std::to_string(n_slots) + ": each slot needs at least one position"));
    return finish(2);
  }
  so.step_tokens = step_tokens;
  so.max_queue = static_cast<size_t>(max_queue);
  if (evict) {
    so.evict_positions = kv::KvPositionsFor(eo.kv_evict, static_cast<int32_t>(bs));
    so.evict_chunk = eo.kv_evict.prefill_chunk;
  }
  auto sched = server::Scheduler::Create(e.model(), e.tokenizer(), &e.pool(), e.kv().paged(), so, &metrics,
                                         prefix_cache->get());
  if (!sched.ok()) {
    ReportError(sched.status());
    return finish(2);
  }
  server::Backend backend;
  backend.scheduler = sched->get();
  backend.tokenizer = &e.tokenizer();
  backend.chat_template = *tmpl;
  backend.model_id = alias.empty() ? std::filesystem::path(eo.model_path).stem().string() : alias;
  backend.n_ctx = so.n_ctx;
  backend.created = static_cast<int64_t>(std::time(nullptr));
  TieredWeightStore* tiered = e.tiered();
  prefix::PrefixCache* pc = prefix_cache->get();
  backend.refresh_metrics = [tiered, pc](server::Metrics* m) {
    if (tiered) {
      const ResidencyStats rs = tiered->residency_stats();  // thread-safe snapshot
      uint64_t reads = 0, bytes = 0, stalls = 0;
      for (const ClassStats& c : rs.per_class) {
        reads += c.reads;
        bytes += c.bytes_read;
        stalls += c.stalls;
      }
      m->SetWeightReads(reads, bytes, stalls);
    }
    if (pc) m->SetPrefixCache(pc->Stats());  // thread-safe
  };
  if (e.tiered()) std::fprintf(stderr, "serve: %s\n", e.memory_plan().ToString().c_str());
  running_scheduler.store(sched->get());
  http.SetBackend(&backend);
  std::fprintf(stderr, "serve: ready: model '%s', %d slots of %lld tokens%s, chat template %s, %d threads\n",
               backend.model_id.c_str(), n_slots, static_cast<long long>(so.n_ctx),
               kv_unified ? " (unified KV: shared, preempting)"
               : evict    ? " (KV bounded by --kv-evict; prefix reuse off)"
                          : "",
               ChatTemplateName(*tmpl), e.pool().size());
  if (pc)
    std::fprintf(stderr, "serve: prefix cache: memory%s%s%s%s\n", prefix_flags.dir.empty() ? "" : ", disk ",
                 prefix_flags.dir.c_str(), prefix_flags.redis.empty() ? "" : ", redis ", prefix_flags.redis.c_str());
  io.join();
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  running_scheduler.store(nullptr);
  // Unfinished requests end (their blocks published), then the tiers' writes are flushed
  // and the disk tier's index written.
  (*sched)->Shutdown();
  if (pc) pc->Flush();
  std::fprintf(stderr, "serve: stopped\n");
  return 0;
}

}  // namespace tierlm::cli
