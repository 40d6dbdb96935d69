#include "eval/kv_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tierlm::eval {
namespace {

kv::KvSparseOptions AtContext(const KvEvalMode& m, int64_t ctx) {
  kv::KvSparseOptions o = m.sparse;
  o.budget_tokens = m.budget_div > 0 ? ctx / m.budget_div : ctx;
  return o;
}

int32_t Argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double LogSoftmaxAt(const std::vector<float>& logits, int32_t id) {
  const float m = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x - m));
  return static_cast<double>(logits[static_cast<size_t>(id)] - m) - std::log(sum);
}

kv::KvEvictOptions EvictAtContext(const KvEvalMode& m, int64_t ctx) {
  kv::KvEvictOptions o = m.evict;
  o.max_tokens = m.budget_div > 0 ? ctx / m.budget_div : ctx;
  return o;
}

}  // namespace

std::string KvEvalMode::Label() const {
  if (evicts())
    return std::string("evict-") + kv::KvEvictModeName(evict.mode) +
           (budget_div > 0 ? " 1/" + std::to_string(budget_div) : " full");
  std::string s = kv::KvSparseModeName(sparse.mode);
  if (sparse.mode == kv::KvSparseMode::kQuest && sparse.shared_heads) s += "-shared";
  if (sparse.mode != kv::KvSparseMode::kExact && sparse.mean_skipped) s += "+mean";
  if (sparse.mode != kv::KvSparseMode::kExact) s += budget_div > 0 ? " 1/" + std::to_string(budget_div) : " full";
  return s;
}

Result<KvEvalReport> RunKvEval(Engine& engine, const PasskeyTask& task, const std::vector<int32_t>& heldout,
                               const KvEvalOptions& o) {
  KvEvalReport report;
  report.options = o;
  LlamaModel& model = engine.model();
  KvCache& kv = engine.kv();
  ThreadPool* pool = &engine.pool();
  const kv::KvSparseOptions saved = model.kv_sparse();
  for (int64_t ctx : o.contexts)
    if (ctx > kv.n_ctx() || ctx < 64)
      return Status::InvalidArgument("kv-eval: context " + std::to_string(ctx) + " is outside [64, " +
                                     std::to_string(kv.n_ctx()) + "] (raise -c)");
  const int32_t bs = kv.paged().blocks().block_size();
  for (const KvEvalMode& m : o.modes) {
    for (int64_t ctx : o.contexts) {
      TIERLM_RETURN_IF_ERROR(kv::CheckKvSparse(AtContext(m, ctx), bs));
      TIERLM_RETURN_IF_ERROR(kv::CheckKvEvict(EvictAtContext(m, ctx), bs).WithContext(
          "kv-eval: " + m.Label() + " at context " + std::to_string(ctx)));
    }
    if (m.evicts() && o.ppl_windows > 0)
      TIERLM_RETURN_IF_ERROR(kv::CheckKvEvict(EvictAtContext(m, o.ppl_context), bs).WithContext(
          "kv-eval: " + m.Label() + " at the perplexity context"));
  }
  const kv::KvEvictOptions saved_evict = model.kv_evict();
  bool sums = false;
  for (const KvEvalMode& m : o.modes) sums |= m.sparse.mean_skipped;
  kv.paged().store().EnableSummaries(sums);
  report.modes.resize(o.modes.size());
  std::vector<uint64_t> read(o.modes.size(), 0), total(o.modes.size(), 0);
  for (size_t m = 0; m < o.modes.size(); ++m) {
    report.modes[m].mode = o.modes[m];
    report.modes[m].passkey.assign(o.contexts.size(), std::vector<PasskeyCell>(o.depths.size()));
  }
  std::vector<float> logits;
  auto decode_step = [&](size_t m, int64_t ctx, int32_t token) -> Status {
    if (!o.modes[m].evicts()) model.set_kv_sparse(AtContext(o.modes[m], ctx));
    model.reset_kv_read_stats();
    const Status st = model.Forward(std::span<const int32_t>(&token, 1), kv, false, &logits, pool);
    read[m] += model.kv_read_stats().read;
    total[m] += model.kv_read_stats().total;
    return st;
  };
  std::mt19937_64 rng(o.seed);
  for (size_t c = 0; c < o.contexts.size(); ++c) {
    for (size_t d = 0; d < o.depths.size(); ++d) {
      for (int64_t t = 0; t < o.trials; ++t) {
        TIERLM_ASSIGN_OR_RETURN(PasskeyDoc doc, task.Make(o.contexts[c], o.depths[d], rng));
        // The exact prefill the sparse modes share (made again after an eviction mode).
        std::vector<float> exact_logits, prompt_logits;
        bool exact_ready = false;
        for (size_t m = 0; m < o.modes.size(); ++m) {
          model.set_kv_sparse({});
          if (o.modes[m].evicts()) {
            kv.set_n_past(0);
            model.set_kv_evict(EvictAtContext(o.modes[m], o.contexts[c]));
            TIERLM_RETURN_IF_ERROR(model.Forward(doc.prompt, kv, false, &prompt_logits, pool));
            exact_ready = false;
          } else {
            if (!exact_ready) {
              kv.set_n_past(0);
              model.set_kv_evict({});
              TIERLM_RETURN_IF_ERROR(model.Forward(doc.prompt, kv, false, &exact_logits, pool));
              exact_ready = true;
            }
            kv.set_n_past(static_cast<int64_t>(doc.prompt.size()));
            prompt_logits = exact_logits;
          }
          bool ok = Argmax(prompt_logits) == doc.answer[0];
          for (size_t i = 1; ok && i < doc.answer.size(); ++i) {
            TIERLM_RETURN_IF_ERROR(decode_step(m, o.contexts[c], doc.answer[i - 1]));
            ok = Argmax(logits) == doc.answer[i];
          }
          PasskeyCell& cell = report.modes[m].passkey[c][d];
          cell.correct += ok;
          ++cell.trials;
        }
      }
    }
  }
  // Perplexity: windows of ppl_context tokens (BOS first), second halves scored.
  const int64_t W = o.ppl_context, half = W / 2;
  if (o.ppl_windows > 0 && (W > kv.n_ctx() || W < 64))
    return Status::InvalidArgument("kv-eval: perplexity context " + std::to_string(W) + " is outside [64, " +
                                   std::to_string(kv.n_ctx()) + "]");
  std::vector<double> nll(o.modes.size(), 0.0);
  int64_t scored = 0;
  for (int64_t w = 0; w < o.ppl_windows; ++w) {
    const int64_t s = w * (W - 1);
    if (s + W - 1 > static_cast<int64_t>(heldout.size()))
      return Status::InvalidArgument("kv-eval: the held-out text has " + std::to_string(heldout.size()) +
                                     " tokens, too few for " + std::to_string(o.ppl_windows) + " windows of " +
                                     std::to_string(W));
    std::vector<int32_t> win;
    win.push_back(engine.tokenizer().vocab().bos_id);
    win.insert(win.end(), heldout.begin() + s, heldout.begin() + s + W - 1);
    std::vector<float> exact_first, first;
    bool exact_ready = false;
    const std::span<const int32_t> head(win.data(), static_cast<size_t>(half));
    for (size_t m = 0; m < o.modes.size(); ++m) {
      model.set_kv_sparse({});
      if (o.modes[m].evicts()) {
        kv.set_n_past(0);
        model.set_kv_evict(EvictAtContext(o.modes[m], W));
        TIERLM_RETURN_IF_ERROR(model.Forward(head, kv, false, &first, pool));
        exact_ready = false;
      } else {
        if (!exact_ready) {
          kv.set_n_past(0);
          model.set_kv_evict({});
          TIERLM_RETURN_IF_ERROR(model.Forward(head, kv, false, &exact_first, pool));
          exact_ready = true;
        }
        kv.set_n_past(half);
        first = exact_first;
      }
      nll[m] -= LogSoftmaxAt(first, win[static_cast<size_t>(half)]);
      for (int64_t p = half; p + 1 < W; ++p) {
        TIERLM_RETURN_IF_ERROR(decode_step(m, W, win[static_cast<size_t>(p)]));
        nll[m] -= LogSoftmaxAt(logits, win[static_cast<size_t>(p + 1)]);
      }
    }
    scored += W - half;
  }
  for (size_t m = 0; m < o.modes.size(); ++m) {
    report.modes[m].ppl = scored > 0 ? std::exp(nll[m] / static_cast<double>(scored)) : 0;
    report.modes[m].ppl_tokens = scored;
    report.modes[m].blocks_read_share = total[m] ? static_cast<double>(read[m]) / static_cast<double>(total[m]) : 1.0;
  }
  model.set_kv_sparse(saved);
  model.set_kv_evict(saved_evict);
  kv.set_n_past(0);
  return report;
}

std::string KvEvalReport::Format() const {
  std::string out;
  char buf[256];
  const KvEvalOptions& o = options;
  out += "pass-key accuracy (greedy answer exact), " + std::to_string(o.trials) + " documents per cell\n";
  out += "| mode | context |";
  for (double d : o.depths) {
    std::snprintf(buf, sizeof(buf), " %.0f%% |", 100 * d);
    out += buf;
  }
  out += " all |\n|---|---|";
  for (size_t i = 0; i <= o.depths.size(); ++i) out += "---|";
  out += "\n";
  for (const KvEvalModeResult& m : modes) {
    for (size_t c = 0; c < o.contexts.size(); ++c) {
      out += "| " + m.mode.Label() + " | " + std::to_string(o.contexts[c]) + " |";
      int64_t ok = 0, n = 0;
      for (const PasskeyCell& cell : m.passkey[c]) {
        std::snprintf(buf, sizeof(buf), " %lld/%lld |", static_cast<long long>(cell.correct),
                      static_cast<long long>(cell.trials));
        out += buf;
        ok += cell.correct;
        n += cell.trials;
      }
      std::snprintf(buf, sizeof(buf), " %.1f%% |\n", n ? 100.0 * static_cast<double>(ok) / static_cast<double>(n) : 0.0);
      out += buf;
    }
  }
  if (o.ppl_windows > 0) {
    std::snprintf(buf, sizeof(buf),
                  "\nperplexity on held-out text: %lld windows of %lld tokens, second halves decoded and scored\n",
                  static_cast<long long>(o.ppl_windows), static_cast<long long>(o.ppl_context));
    out += buf;
    out += "| mode | perplexity | vs exact | KV blocks read per decode step |\n|---|---|---|---|\n";
    double exact = 0;
    for (const KvEvalModeResult& m : modes)
      if (m.mode.sparse.mode == kv::KvSparseMode::kExact && !m.mode.evicts() && exact == 0) exact = m.ppl;
    for (const KvEvalModeResult& m : modes) {
      std::string vs = "-";
      if (exact > 0) {
        std::snprintf(buf, sizeof(buf), "%+.2f%%", 100.0 * (m.ppl / exact - 1.0));
        vs = buf;
      }
      std::snprintf(buf, sizeof(buf), "| %s | %.4f | %s | %.1f%% |\n", m.mode.Label().c_str(), m.ppl, vs.c_str(),
                    100.0 * m.blocks_read_share);
      out += buf;
    }
  }
  return out;
}

}  // namespace tierlm::eval
