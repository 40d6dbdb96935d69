// kv-report: how much of the true attention each block-selection policy would read, from
// an attention trace (eval/kv_trace.h), at budgets given as fractions of the context.
//
// For every record (a decode step's layer and KV head) and budget of k = ceil(blocks / D)
// blocks (at least the sinks and the window), a policy picks k blocks: the first sink
// block, the two most recent, and the rest by its score. Its recall is the share of the
// record's true attention on the blocks it picked; the report prints the mean over
// records (and the worst layer's mean), per policy and budget:
//   oracle      the true shares themselves (the ceiling of any selection);
//   quest       Quest's key-bound score (what --kv-sparse quest reads);
//   prev-layer  the previous layer's true shares at the same step and head (InfiniGen and
//               NOSA predict layer l + 1's blocks from layer l; layer 0 falls back to quest);
//   prev-step   the same layer's true shares one decode step before (a selection reused for
//               a step; the first step falls back to quest);
//   h2o         the true shares summed over the steps before (what a heavy-hitter cache
//               would hold; the first step falls back to quest);
//   streaming   nothing: the sinks and the most recent blocks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "eval/kv_trace.h"

namespace tierlm::eval {

struct KvReportRow {
  std::string policy;
  std::vector<double> recall;        // per budget: mean over records
  std::vector<double> worst_layer;   // per budget: the lowest layer mean
  std::vector<std::vector<double>> by_layer;  // per budget, per layer: the mean
};

struct KvReport {
  std::vector<int64_t> budget_divs;
  int64_t records = 0, steps = 0;
  std::vector<KvReportRow> rows;
  // Both tables: the means per budget, then per layer at the budget closest to 1/8.
  std::string Format() const;
};

// InvalidArgument for an empty trace or a divisor below 1.
Result<KvReport> ReplayKvTrace(const KvTrace& trace, const std::vector<int64_t>& budget_divs);

}  // namespace tierlm::eval
