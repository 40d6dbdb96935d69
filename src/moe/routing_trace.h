// RoutingTrace: which experts the router chose, for every token and every MoE layer.
//
// The trace is a dense table [token][layer][k] of (expert id, routing weight), filled by
// MoeFfn as the model runs (MoeFfn::set_trace) and read by the cache simulators and the
// routing-consistency metrics (moe/cache_simulator.h, moe/routing_consistency.h).
//
// Token index: the order in which tokens went through the model. Each layer keeps its own
// count of recorded tokens, so a batch of n tokens at layer l gets indices
// [count(l), count(l) + n); a token is complete once every layer recorded it, and only
// complete tokens count (n_tokens()). A prompt and the tokens generated after it therefore
// form one sequence, whatever the batch sizes were. A trace may hold several sequences
// (prompts run one after another, each in a fresh context): BeginSequence() marks where
// each one starts, so that metrics over runs of consecutive tokens never straddle two.
//
// File format (text, one token per line, small enough to read and diff):
//   tierlm-routing-trace 2 <n_layer> <n_expert> <n_used> <n_tokens> <n_sequences>
//   sequences <start_0 = 0> <start_1> ... (strictly increasing, each < n_tokens)
//   then per token, for each layer, for each k: "<expert> <weight>" separated by spaces.
// Version 1 (no sequence count, no "sequences" line: one sequence) is still read.
//
// Thread safety: none; one writer (the model's forward pass) at a time.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tierlm {

class RoutingTrace {
 public:
  RoutingTrace() = default;
  // REQUIRES: n_layer > 0, n_expert > 0, 0 < n_used <= n_expert.
  RoutingTrace(int32_t n_layer, int32_t n_expert, int32_t n_used);

  int32_t n_layer() const { return n_layer_; }
  int32_t n_expert() const { return n_expert_; }
  int32_t n_used() const { return n_used_; }
  // Tokens that every layer has recorded.
  int64_t n_tokens() const;

  // Appends the routing of n tokens at `layer`: experts/weights are [n][n_used].
  // InvalidArgument if the layer or an expert id is out of range, or a token names one
  // expert twice (nothing is recorded then).
  Status Record(int32_t layer, int64_t n, const int32_t* experts, const float* weights);

  // Appends one complete token: experts/weights are [n_layer][n_used]. Used by tests and
  // synthetic traces. REQUIRES: every layer has recorded exactly n_tokens() tokens.
  Status AppendToken(const int32_t* experts, const float* weights);

  // The k-th expert (and its weight) chosen for `token` at `layer`.
  // REQUIRES: token < n_tokens(), layer < n_layer(), k < n_used().
  int32_t expert(int64_t token, int32_t layer, int32_t k) const { return experts_[Index(token, layer, k)]; }
  float weight(int64_t token, int32_t layer, int32_t k) const { return weights_[Index(token, layer, k)]; }

  // Marks that the next token (n_tokens()) starts a new sequence. A no-op at a token that
  // already starts one (token 0 always does). InvalidArgument while a token is partly
  // recorded (some layers have it, others not).
  Status BeginSequence();
  // First token of each sequence: starts with 0, strictly increasing. A start equal to
  // n_tokens() (a sequence begun but not yet recorded) is left out.
  std::vector<int64_t> sequence_starts() const;
  // [begin, end) token ranges of the non-empty sequences, in order.
  std::vector<std::pair<int64_t, int64_t>> sequences() const;

  // Writes n_tokens() complete tokens to `path` (through path.tmp and a rename).
  Status Save(const std::string& path) const;
  // Reads a trace written by Save; Corruption names the file and line at fault.
  static Result<RoutingTrace> Load(const std::string& path);
  // The same from the file's text; `path` names it in errors.
  static Result<RoutingTrace> Parse(const std::string& text, const std::string& path);
  // Most expert choices per token a trace may have (n_layer * n_used).
  static constexpr int64_t kMaxChoicesPerToken = int64_t{1} << 20;

 private:
  size_t Index(int64_t token, int32_t layer, int32_t k) const {
    return static_cast<size_t>((token * n_layer_ + layer) * n_used_ + k);
  }
  int32_t n_layer_ = 0, n_expert_ = 0, n_used_ = 0;
  std::vector<int64_t> recorded_;  // [n_layer]: tokens recorded per layer
  std::vector<int32_t> experts_;   // [token][layer][k]; -1 where not recorded yet
  std::vector<float> weights_;     // [token][layer][k]
  std::vector<int64_t> starts_ = {0};  // BeginSequence() marks, strictly increasing
};

}  // namespace tierlm
