// tierlm kv-eval: the quality cost of the KV modes on a trained model (eval/kv_eval.h):
// pass-key accuracy by context and depth, and held-out perplexity, exact beside each
// sparse mode at budgets given as fractions of the context.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/kv_options.h"
#include "cli/load_progress.h"
#include "eval/kv_eval.h"

namespace tierlm::cli {
namespace {

// "exact,quest/8": a mode, then optionally "/D" for a budget of 1/D of the context.
Result<std::vector<eval::KvEvalMode>> ParseModes(const std::string& s, const kv::KvSparseOptions& base,
                                                 const kv::KvEvictOptions& evict) {
  std::vector<eval::KvEvalMode> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    eval::KvEvalMode m;
    m.sparse = base;
    const size_t slash = item.find('/');
    std::string name = item.substr(0, slash);
    if (name.size() > 5 && name.compare(name.size() - 5, 5, "+mean") == 0) {  // skipped blocks as their means
      name.resize(name.size() - 5);
      m.sparse.mean_skipped = true;
    }
    if (name == "quest-shared") {  // quest, one selection for all KV heads
      name = "quest";
      m.sparse.shared_heads = true;
    }
    if (name.rfind("evict-", 0) == 0) {  // an eviction policy
      m.evict = evict;
      TIERLM_ASSIGN_OR_RETURN(m.evict.mode, kv::ParseKvEvictMode(name.substr(6)));
      if (m.evict.mode == kv::KvEvictMode::kNone)
        return Status::InvalidArgument("--modes: '" + item + "': evict-none is exact");
    } else {
      TIERLM_ASSIGN_OR_RETURN(m.sparse.mode, kv::ParseKvSparseMode(name));
    }
    if (slash != std::string::npos) {
      auto d = ParseIntList("--modes", item.substr(slash + 1));
      if (!d.ok() || d->size() != 1 || (*d)[0] < 1)
        return Status::InvalidArgument("--modes: '" + item + "': the budget divisor must be a positive integer");
      m.budget_div = (*d)[0];
    }
    out.push_back(m);
  }
  if (out.empty()) return Status::InvalidArgument("--modes: no mode given");
  return out;
}

}  // namespace

int KvEvalCommand(int argc, char** argv) {
  EngineOptions eo;
  std::string text_path, contexts = "1024,2048,4096", depths = "0,25,50,75,100", modes = "exact";
  int64_t trials = 4, ppl_ctx = 4096, ppl_windows = 4, threads = 0;
  uint64_t seed = 1;
  KvTypeFlags kv_types;
  ArgParser ap("kv-eval");
  ap.Add({"-m", "--model"}, &eo.model_path, "model file (a trained long-context model: tests/models/longctx.gguf)");
  ap.Add({"--text"}, &text_path, "held-out text: pass-key filler and perplexity (tests/models/longctx-heldout.txt)");
  ap.Add({"--contexts"}, &contexts, "pass-key document lengths in tokens, comma-separated (default 1024,2048,4096)");
  ap.Add({"--depths"}, &depths, "needle depths in percent of the filler, comma-separated (default 0,25,50,75,100)");
  ap.Add({"--trials"}, &trials, "documents per context and depth (default 4)");
  ap.Add({"--seed"}, &seed, "seed of the documents' keys and filler offsets (default 1)");
  ap.Add({"--modes"}, &modes,
         "modes to compare, comma-separated: exact, quest/D, quest-shared/D (one selection for all KV heads), "
         "streaming/D (a sparse mode +mean: skipped blocks count as their means, e.g. quest+mean/8), evict-P/D for an eviction policy P (streaming, h2o, snapkv, sirllm, lazy, retention: "
         "--kv-evict's) (budget 1/D of the context; a mode without /D: the whole context) (default exact)");
  ap.Add({"--ppl-ctx"}, &ppl_ctx, "perplexity window in tokens (default 4096)");
  ap.Add({"--ppl-windows"}, &ppl_windows, "perplexity windows, 0: none (default 4)");
  ap.Add({"-c", "--ctx-size"}, &eo.n_ctx, "context size (default: the model's, at most 4096)");
  ap.Add({"-t", "--threads"}, &threads, "threads (default: all cores)");
  AddKvTypeOptions(ap, &kv_types);
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (eo.model_path.empty() || text_path.empty())
    return ReportError(Status::InvalidArgument("kv-eval: give a model (-m) and held-out text (--text)"));
  if (trials < 1) return ReportError(Status::InvalidArgument("--trials must be at least 1"));
  if (ppl_windows < 0) return ReportError(Status::InvalidArgument("--ppl-windows must be >= 0"));
  NoteThreads(threads);
  eo.n_threads = static_cast<int32_t>(threads > 0 ? threads : 0);
  eval::KvEvalOptions o;
  auto ctx = ParseIntList("--contexts", contexts);
  if (!ctx.ok()) return ReportError(ctx.status());
  o.contexts = *ctx;
  auto dep = ParseIntList("--depths", depths);
  if (!dep.ok()) return ReportError(dep.status());
  o.depths.clear();
  for (int64_t d : *dep) {
    if (d > 100) return ReportError(Status::InvalidArgument("--depths: " + std::to_string(d) + " is above 100"));
    o.depths.push_back(static_cast<double>(d) / 100.0);
  }
  o.trials = trials;
  o.seed = seed;
  o.ppl_context = ppl_ctx;
  o.ppl_windows = ppl_windows;
  st = ApplyKvTypes(kv_types, &eo.kv_format);
  if (!st.ok()) return ReportError(st);
  kv::KvSparseOptions base;
  base.sink_blocks = kv_types.sinks;
  base.recent_blocks = kv_types.recent;
  base.dense_layers = kv_types.dense_layers;
  base.shared_heads = kv_types.select_heads == "shared";
  base.mean_skipped = kv_types.skipped == "mean";
  kv::KvEvictOptions evict;
  evict.sink_blocks = kv_types.sinks;
  evict.recent_blocks = kv_types.recent;
  evict.window = kv_types.evict_window;
  evict.decay = kv_types.evict_decay;
  auto parsed = ParseModes(modes, base, evict);
  if (!parsed.ok()) return ReportError(parsed.status());
  o.modes = *parsed;
  std::ifstream in(text_path, std::ios::binary);
  if (!in) return ReportError(Status::NotFound("kv-eval: cannot open the held-out text '" + text_path + "'"));
  std::stringstream text;
  text << in.rdbuf();
  auto engine = LoadEngineWithProgress(eo, true);
  if (!engine.ok()) return ReportError(engine.status());
  const tokenizer::Tokenizer& tok = (*engine)->tokenizer();
  std::vector<int32_t> heldout = eval::TokenizeLines(tok, text.str());
  eval::PasskeyTask task(tok, heldout);
  auto report = eval::RunKvEval(**engine, task, heldout, o);
  if (!report.ok()) return ReportError(report.status());
  std::printf("kv-eval: %s, held-out text %s (%zu tokens), KV %s/%s, block %d\n\n", eo.model_path.c_str(),
              text_path.c_str(), heldout.size(), kv_types.k.c_str(), kv_types.v.c_str(), kv_types.block);
  std::printf("%s", report->Format().c_str());
  return 0;
}

}  // namespace tierlm::cli
