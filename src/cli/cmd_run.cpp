#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/args.h"
#include "core/format_bytes.h"
#include "cli/kv_options.h"
#include "cli/prefix_options.h"
#include "cli/commands.h"
#include "cli/default_model.h"
#include "cli/load_progress.h"
#include "core/progress.h"
#include "runtime/chat_template.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "tiers/tiered_weight_store.h"
#include "tokenizer/detokenizer.h"

namespace tierlm::cli {
namespace {

struct RunOptions {
  EngineOptions engine;
  SamplerParams sampling;
  std::string prompt;
  std::string prompt_file;
  std::string system_prompt;
  std::string chat_template;
  int64_t n_predict = -1;
  bool token_ids = false;
  bool verbose = false;
  bool no_display_prompt = false;
  std::string mem_budget;
  bool no_gate_ahead = false;
  std::string moe_miss = "exact";
  bool quiet = false;  // no progress lines
  bool seed_random = false;  // --seed -1: drawn at parse time, printed on stderr
  bool synthetic = false;
  KvTypeFlags kv_types;
  PrefixFlags prefix;
};

void AddCommonOptions(ArgParser& ap, RunOptions& o) {
  ap.Add({"-m", "--model"}, &o.engine.model_path, "GGUF model file (default: the built-in stories260K)");
  ap.Flag({"--synthetic"}, &o.synthetic, "without -m: a built-in random-weight model of a real shape instead");
  ap.Add({"-t", "--threads"}, &o.engine.n_threads, "compute threads, at most 1024 (default and <= 0: all cores)");
  ap.Add({"-c", "--ctx-size"}, &o.engine.n_ctx, "context size in tokens; 0: the model's, at most 4096 (default 0)");
  ap.Add({"-b", "--batch-size"}, &o.engine.n_batch, "prompt tokens per batch, at least 1, at most -c (default 512)");
  ap.Add({"-n", "--n-predict"}, &o.n_predict,
         "tokens to generate; < 0: until end of generation or full context (default -1)");
  ap.Add({"--temp"}, &o.sampling.temperature, "temperature; <= 0 is greedy (argmax) (default 0.8)");
  ap.Add({"--top-k"}, &o.sampling.top_k, "top-k cut; <= 0 off (default 40)");
  ap.Add({"--top-p"}, &o.sampling.top_p, "top-p cut in [0, 1]; 1 off, 0 keeps only the top token (default 0.95)");
  ap.Add({"--min-p"}, &o.sampling.min_p, "min-p cut in [0, 1]; 0 off (default 0.05)");
  ap.Add({"--repeat-penalty"}, &o.sampling.repeat_penalty, "repetition penalty, > 0; 1 off (default 1.0)");
  ap.Add({"--repeat-last-n"}, &o.sampling.repeat_last_n,
         "tokens the penalty looks back over; 0 off, -1 the whole context (default 64)");
  ap.AddSeed({"-s", "--seed"}, &o.sampling.seed, &o.seed_random,
             "random seed; -1 draws one and prints it (default 4294967295)");
  ap.Add({"--mem-budget"}, &o.mem_budget, "bound on all engine memory, e.g. 6G; weights beyond it stream from disk");
  AddKvTypeOptions(ap, &o.kv_types);
  ap.Add({"--prefetch"}, &o.engine.prefetch_depth, "tensors read ahead under a budget; 0 none (default 4)");
  ap.Add({"--moe-policy"}, &o.engine.moe_policy, "expert cache eviction under a budget: lru, lfu-decay, score (default lfu-decay)");
  ap.Flag({"--no-gate-ahead"}, &o.no_gate_ahead, "do not prefetch the experts the next layer's router predicts");
  ap.Add({"--moe-miss"}, &o.moe_miss,
         "an expert not in memory under a budget: exact (read it), lowbit (use its 2.6-bit copy), auto (the copy "
         "unless its read is under way); lowbit-all: every expert from its copy (default exact)");
  ap.Add({"--lowbit-cache"}, &o.engine.lowbit_cache_path, "low-bit expert cache file (default: <model>.tierlm-lowbit)");
  ap.Flag({"-v", "--verbose"}, &o.verbose, "print load details and statistics");
  ap.Flag({"-q", "--quiet"}, &o.quiet, "print no progress lines on stderr (loading, low-bit cache, prefill)");
  AddPrefixOptions(ap, &o.prefix, /*with_off=*/false);
}

// The sampling flags a demanding user expects to be refused rather than silently bent
// (llama.cpp's meanings otherwise: temperature <= 0 is greedy, top-k <= 0 is off).
Status CheckSampling(const SamplerParams& p) {
  auto num = [](float x) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", static_cast<double>(x));
    return std::string(b);
  };
  if (!(p.top_p >= 0.0f && p.top_p <= 1.0f))
    return Status::InvalidArgument("--top-p " + num(p.top_p) + ": must be in [0, 1] (1 is off)");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return Status::InvalidArgument("--min-p " + num(p.min_p) + ": must be in [0, 1] (0 is off)");
  if (!(p.repeat_penalty > 0.0f))
    return Status::InvalidArgument("--repeat-penalty " + num(p.repeat_penalty) + ": must be positive (1 is off)");
  if (p.repeat_last_n < -1)
    return Status::InvalidArgument("--repeat-last-n " + std::to_string(p.repeat_last_n) +
                                   ": must be -1 (the whole context), 0 (off) or positive");
  return Status::Ok();
}

// Checks the flags that need no model; prints the seed --seed -1 drew.
Status CheckOptions(const RunOptions& o) {
  TIERLM_RETURN_IF_ERROR(CheckSampling(o.sampling));
  TIERLM_RETURN_IF_ERROR(ResolveThreadCount(o.engine.n_threads).status());
  NoteThreads(o.engine.n_threads);
  if (o.seed_random)
    std::fprintf(stderr, "seed: %llu (drawn for --seed -1)\n", static_cast<unsigned long long>(o.sampling.seed));
  return Status::Ok();
}

Result<std::unique_ptr<Engine>> LoadEngine(RunOptions& o) {
  if (!o.mem_budget.empty()) {
    auto budget = ParseByteSize(o.mem_budget);
    if (!budget.ok()) return budget.status().WithContext("--mem-budget");
    o.engine.mem_budget_bytes = *budget;
    if (o.engine.mem_budget_bytes == 0) return Status::InvalidArgument("--mem-budget must be positive");
  }
  if (o.engine.model_path.empty()) {
    TIERLM_ASSIGN_OR_RETURN(o.engine.model_path, EnsureDefaultModel(o.synthetic));
  }
  o.engine.gate_ahead = !o.no_gate_ahead;
  TIERLM_ASSIGN_OR_RETURN(o.engine.moe_miss, ParseMoeMiss(o.moe_miss));
  TIERLM_RETURN_IF_ERROR(ApplyKvTypes(o.kv_types, &o.engine.kv_format, &o.engine.kv_mem_bytes));
  TIERLM_RETURN_IF_ERROR(ApplyKvSparse(o.kv_types, &o.engine.kv_sparse));
  TIERLM_RETURN_IF_ERROR(ApplyKvEvict(o.kv_types, &o.engine.kv_evict));
  o.engine.kv_spill_dir = o.kv_types.spill_dir;
  TIERLM_ASSIGN_OR_RETURN(std::unique_ptr<Engine> e, LoadEngineWithProgress(o.engine, o.quiet));
  if (o.sampling.repeat_last_n == -1) o.sampling.repeat_last_n = static_cast<int32_t>(e->kv().n_ctx());
  return e;
}

// Starts the engine's sequence from the longest cached prefix of `prompt` (a previous run's,
// from the prefix cache's disk or Redis tier); returns the tokens still to evaluate.
Result<std::span<const int32_t>> AttachPrefix(prefix::PrefixCache* pc, Engine& e, std::span<const int32_t> prompt,
                                              prefix::PrefixHit* hit) {
  *hit = {};
  if (!pc) return prompt;
  kv::PagedKvCache& cache = e.kv().paged();
  cache.Free(KvCache::kSeq);
  TIERLM_ASSIGN_OR_RETURN(*hit, pc->Attach(cache, KvCache::kSeq, prompt, 0));
  return prompt.subspan(static_cast<size_t>(hit->tokens()));
}

void PrintPrefix(const prefix::PrefixHit& hit, size_t n_prompt) {
  std::fprintf(stderr, "prefix cache: %lld of %zu prompt tokens reused (disk %lld, redis %lld) in %.0f ms\n",
               static_cast<long long>(hit.tokens()), n_prompt, static_cast<long long>(hit.disk_tokens),
               static_cast<long long>(hit.redis_tokens), hit.load_ms);
}

void PrintStats(Engine& e, const GenerateStats& s) {
  std::fprintf(stderr,
               "\n\nload: %.0f ms | prompt: %lld tokens, %.1f tokens/s | first token after %.0f ms | "
               "generation: %lld tokens, %.1f tokens/s | peak RSS %.1f MiB\n",
               e.load_ms(), static_cast<long long>(s.n_prompt), s.prompt_tps(), s.ttft_ms,
               static_cast<long long>(s.n_generated), s.decode_tps(), PeakRssBytes() / 1048576.0);
  if (!e.lowbit_note().empty()) {
    const MoeCopyStats& c = e.model().moe_ffn().copy_stats();
    std::fprintf(stderr, "%s; experts computed from full copies %lld, from low-bit copies %lld\n",
                 e.lowbit_note().c_str(), static_cast<long long>(c.full), static_cast<long long>(c.lowbit));
  }
  if (e.tiered()) {
    const auto fs = e.tiered()->file_stats();
    std::fprintf(stderr, "%s\nweights: %s reads (%s), %s\n", e.memory_plan().ToString().c_str(), fs.engine.c_str(),
                 fs.direct_io ? "O_DIRECT" : "buffered", e.tiered()->residency_stats().ToString().c_str());
  }
  const kv::KvTierStats kt = e.kv().paged().store().TierStats();
  if (kt.tiered)
    std::fprintf(stderr, "KV cache: tiered, %s in memory; %s written to the spill file (%s, %s), %s read back\n",
                 FormatBytes(kt.budget_bytes).c_str(), FormatBytes(kt.spilled_bytes).c_str(),
                 kt.spill_file.engine.c_str(), kt.spill_file.direct_io ? "O_DIRECT" : "buffered",
                 FormatBytes(kt.read_bytes).c_str());
}

}  // namespace

int RunCommand(int argc, char** argv) {
  RunOptions o;
  ArgParser ap("run");
  AddCommonOptions(ap, o);
  ap.Add({"-p", "--prompt"}, &o.prompt, "prompt text (may be empty: generation starts from BOS)",
         /*allow_empty=*/true);
  ap.Add({"-f", "--file"}, &o.prompt_file, "read the prompt from a file");
  ap.Flag({"--token-ids"}, &o.token_ids, "print generated token ids, space-separated, instead of text");
  ap.Flag({"--no-display-prompt"}, &o.no_display_prompt, "do not echo the prompt");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (Status c = CheckOptions(o); !c.ok()) return ReportError(c);
  auto pc = OpenPrefixFromFlags(o.prefix, /*memory_by_default=*/false);
  if (!pc.ok()) return ReportError(pc.status());
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) return ReportError(Status::IoError(o.prompt_file + ": cannot read the prompt file"));
    std::stringstream ss;
    ss << in.rdbuf();
    o.prompt = ss.str();
  }

  auto engine = LoadEngine(o);
  if (!engine.ok()) return ReportError(engine.status());
  Engine& e = **engine;
  const auto& tok = e.tokenizer();
  const std::vector<int32_t> prompt = tok.Encode(o.prompt, /*add_special=*/true, /*parse_special=*/true);
  if (o.verbose) {
    std::fprintf(stderr, "%s\n", e.memory_plan().ToString().c_str());
    std::fprintf(stderr, "model: %s (%s, %lld layers), context %lld, %d threads, prompt %zu tokens\n",
                 o.engine.model_path.c_str(), e.model().hparams().arch_name.c_str(),
                 static_cast<long long>(e.model().hparams().n_layer), static_cast<long long>(e.kv().n_ctx()),
                 e.pool().size(), prompt.size());
  }
  // The prompt is echoed once the prefill is done, so that a progress line redrawn on the
  // terminal during a long prefill does not overwrite it.
  bool echoed = o.token_ids || o.no_display_prompt;
  auto echo_prompt = [&] {
    if (echoed) return;
    echoed = true;
    std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
    std::fflush(stdout);
  };

  tokenizer::Detokenizer::Options dopt;
  dopt.strip_leading_space = false;
  tokenizer::Detokenizer detok(tok, dopt);
  bool first_id = true;
  prefix::PrefixHit hit;
  auto rest = AttachPrefix(pc->get(), e, prompt, &hit);
  if (!rest.ok()) return ReportError(rest.status());
  GenerateRequest req;
  req.prompt = *rest;
  req.n_predict = o.n_predict;
  req.sampling = o.sampling;
  req.is_eog = [&](int32_t id) { return tok.IsEog(id); };
  Progress prefill(ProgressOptions::FromEnvironment(o.quiet));
  prefill.Start("prefill", rest->size(), Progress::Unit::kItems, "tokens");
  req.prefill_progress = prefill.Reporter();
  req.on_token = [&](int32_t id) {
    echo_prompt();
    if (o.token_ids) {
      std::printf(first_id ? "%d" : " %d", id);
      first_id = false;
    } else {
      const std::string text = detok.Push(id);
      std::fwrite(text.data(), 1, text.size(), stdout);
    }
    std::fflush(stdout);
    return true;
  };
  auto stats = Generate(e.model(), e.kv(), &e.pool(), req);
  prefill.Stop();
  echo_prompt();
  if (!stats.ok()) {
    std::printf("\n");
    return ReportError(stats.status());
  }
  if (!o.token_ids) {
    const std::string rest = detok.Flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  std::printf("\n");
  std::fflush(stdout);
  if (*pc) {
    // The next run with this prompt starts from these blocks.
    (*pc)->Publish(e.kv().paged(), KvCache::kSeq);
    (*pc)->Flush();
    PrintPrefix(hit, prompt.size());
  }
  PrintStats(e, *stats);
  return 0;
}

int ChatCommand(int argc, char** argv) {
  RunOptions o;
  ArgParser ap("chat");
  AddCommonOptions(ap, o);
  ap.Add({"-sys", "--system-prompt"}, &o.system_prompt, "system message", /*allow_empty=*/true);
  ap.Add({"--chat-template"}, &o.chat_template,
         "template: chatml, llama2, llama3, mistral, zephyr, phi3, gemma (default: from the model)");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (Status c = CheckOptions(o); !c.ok()) return ReportError(c);
  auto pc = OpenPrefixFromFlags(o.prefix, /*memory_by_default=*/false);
  if (!pc.ok()) return ReportError(pc.status());

  auto engine = LoadEngine(o);
  if (!engine.ok()) return ReportError(engine.status());
  Engine& e = **engine;
  const auto& tok = e.tokenizer();

  std::optional<ChatTemplate> tmpl;
  if (!o.chat_template.empty()) {
    tmpl = ParseChatTemplateName(o.chat_template);
    if (!tmpl) return ReportError(Status::InvalidArgument("chat: unknown template '" + o.chat_template + "'"));
  } else {
    tmpl = DetectChatTemplate(tok.vocab().chat_template);
    if (!tmpl) {
      std::fprintf(stderr, "note: the model has no recognised chat template; using chatml\n");
      tmpl = ChatTemplate::kChatml;
    }
  }
  std::fprintf(stderr, "chat template: %s. Type a message and press Enter; an empty line or Ctrl-D ends.\n",
               ChatTemplateName(*tmpl));

  std::vector<ChatMessage> msgs;
  if (!o.system_prompt.empty()) msgs.push_back({"system", o.system_prompt});
  std::string in_kv;  // the conversation text whose tokens are in the KV cache
  std::string line;
  while (true) {
    std::fprintf(stdout, "\n> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty()) break;
    msgs.push_back({"user", line});
    const std::string full = FormatChat(*tmpl, msgs, /*add_assistant_prefix=*/true);
    std::vector<int32_t> new_tokens;
    std::span<const int32_t> to_eval;
    if (!in_kv.empty() && full.compare(0, in_kv.size(), in_kv) == 0) {
      new_tokens = tok.Encode(full.substr(in_kv.size()), /*add_special=*/false, /*parse_special=*/true);
      to_eval = new_tokens;
    } else {
      e.kv().set_n_past(0);  // the template rewrote history (or this is the first turn): start over
      new_tokens = tok.Encode(full, /*add_special=*/true, /*parse_special=*/true);
      prefix::PrefixHit hit;
      auto rest = AttachPrefix(pc->get(), e, new_tokens, &hit);
      if (!rest.ok()) return ReportError(rest.status());
      to_eval = *rest;
      if (o.verbose && *pc) PrintPrefix(hit, new_tokens.size());
    }
    std::string reply;
    tokenizer::Detokenizer detok(tok);
    GenerateRequest req;
    req.prompt = to_eval;
    req.n_predict = o.n_predict;
    req.sampling = o.sampling;
    req.is_eog = [&](int32_t id) { return tok.IsEog(id); };
    req.eval_last = true;  // the next turn continues from this reply's tokens
    Progress prefill(ProgressOptions::FromEnvironment(o.quiet));
    prefill.Start("prefill", to_eval.size(), Progress::Unit::kItems, "tokens");
    req.prefill_progress = prefill.Reporter();
    req.on_token = [&](int32_t id) {
      const std::string text = detok.Push(id);
      reply += text;
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return true;
    };
    auto stats = Generate(e.model(), e.kv(), &e.pool(), req);
    prefill.Stop();
    if (!stats.ok()) {
      std::fprintf(stdout, "\n");
      return ReportError(stats.status());
    }
    reply += detok.Flush();
    if (*pc) (*pc)->Publish(e.kv().paged(), KvCache::kSeq);
    if (o.verbose) PrintStats(e, *stats);
    msgs.push_back({"assistant", reply});
    in_kv = full + reply;
    if (stats->context_full) {
      std::fprintf(stderr, "\nnote: the context is full; start a new chat or raise -c\n");
      break;
    }
  }
  std::fprintf(stdout, "\n");
  return 0;
}

}  // namespace tierlm::cli
