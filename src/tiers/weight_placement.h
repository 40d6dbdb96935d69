// WeightPlacement: which of a model's weight units stay in DRAM for good and which stream
// from storage each token, for a given budget (what `tierlm plan` prints).
//
// Units are the file's tensors, except stacked expert tensors (`*_exps`, 3-D), which are
// split into one unit per expert ("name#e", as model/moe_ffn.h slices them).
//
// Choice: every unit is used about once per token, so each pinned byte saves one read
// byte per token; ties are broken by what streaming costs most: 1-D tensors (norms,
// biases: tiny, latency-bound) are "essentials" and always pinned; then the token
// embedding and output, then attention, then dense FFN; within a group,
// smaller first. Experts are never pinned unless the whole model fits: what the pinned set
// leaves is the expert cache, filled by use under the expert policy. Units are pinned
// greedily in that order while
//   pinned + max(2 * largest streamed unit, (1 - pinned_share) * budget) <= budget,
// so the ring of streamed buffers always double-buffers the largest streamed unit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "format/gguf_file.h"

namespace tierlm {

struct PlacementOptions {
  // The DRAM budget for weights, bytes. REQUIRES: > 0.
  uint64_t budget_bytes = 0;
  // At most this share of the budget is pinned when not everything fits; the rest is the
  // streaming ring (more ring = deeper prefetch). Default: 0.9.
  double pinned_share = 0.9;
};

struct WeightUnit {
  std::string name;     // tensor name, or "name#e" for one expert of a stacked tensor
  uint64_t offset = 0;  // absolute file offset
  uint64_t size = 0;    // bytes
  uint64_t slot_bytes = 0;  // DRAM it occupies: its 4 KiB-aligned covering range
  bool expert = false;
  bool pinned = false;
};

struct WeightPlacement {
  uint64_t budget_bytes = 0;
  uint64_t total_bytes = 0;              // all units' slot bytes
  uint64_t pinned_bytes = 0;             // slots of pinned units
  uint64_t ring_bytes = 0;               // budget - pinned: streaming buffers
  uint64_t streamed_bytes_per_token = 0; // slot bytes of streamed dense units (experts: upper bound, all)
  uint64_t min_budget_bytes = 0;         // essentials + 2 * largest non-essential unit
  uint64_t largest_streamed_bytes = 0;
  int n_pinned = 0;
  int n_streamed = 0;
  std::vector<WeightUnit> units;         // file order

  std::string ToString() const;          // a short human summary
};

// Returns the placement, or kOutOfRange naming the smallest workable budget if
// budget_bytes is below it.
Result<WeightPlacement> PlanWeightPlacement(const gguf::GgufFile& file, const PlacementOptions& options);

}  // namespace tierlm
