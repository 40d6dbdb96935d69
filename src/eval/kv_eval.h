// kv-eval: what a KV mode costs in quality, measured on a trained model: pass-key
// retrieval accuracy by context length and depth, and perplexity on held-out text, for
// exact attention, each sparse mode and each eviction policy at budgets given as fractions
// of the context.
//
// Every mode sees the same documents: a prompt is prefilled once (prefill is exact in
// every sparse mode), then each sparse mode decodes from the same KV (the cache is cut
// back to the prompt between modes). An eviction policy prefills the prompt itself, in
// chunks under its bound, so it may have dropped the needle before the question comes.
// Perplexity scores the second half of each window of ctx tokens, decoded one token at a
// time (so sparse modes select at every step) after a prefill of the first half (exact,
// or under the eviction bound).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "eval/passkey_task.h"
#include "kv/block_selector.h"
#include "kv/eviction_policy.h"
#include "runtime/engine.h"

namespace tierlm::eval {

// A mode and its budget as a fraction of the context (1/budget_div; 0: the whole context).
struct KvEvalMode {
  kv::KvSparseOptions sparse;  // budget_tokens is set per context from budget_div
  // An eviction policy instead (mode != kNone): max_tokens is set per context from
  // budget_div, and the mode prefills every prompt itself, under its bound.
  kv::KvEvictOptions evict;
  int64_t budget_div = 0;
  bool evicts() const { return evict.mode != kv::KvEvictMode::kNone; }
  std::string Label() const;
};

struct KvEvalOptions {
  std::vector<int64_t> contexts{1024, 2048, 4096};
  std::vector<double> depths{0.0, 0.25, 0.5, 0.75, 1.0};
  int64_t trials = 4;  // documents per (context, depth)
  uint64_t seed = 1;
  int64_t ppl_context = 4096;
  int64_t ppl_windows = 4;
  std::vector<KvEvalMode> modes;
};

struct PasskeyCell {
  int64_t correct = 0, trials = 0;
};

struct KvEvalModeResult {
  KvEvalMode mode;
  // [context][depth]
  std::vector<std::vector<PasskeyCell>> passkey;
  double ppl = 0;
  int64_t ppl_tokens = 0;
  double blocks_read_share = 1;  // of the KV blocks the decode steps could read (kept ones)
};

struct KvEvalReport {
  KvEvalOptions options;
  std::vector<KvEvalModeResult> modes;
  std::string Format() const;  // the tables kv-eval prints
};

// Errors: a context beyond the engine's, documents the text is too short for, forwards.
Result<KvEvalReport> RunKvEval(Engine& engine, const PasskeyTask& task, const std::vector<int32_t>& heldout,
                               const KvEvalOptions& options);

}  // namespace tierlm::eval
