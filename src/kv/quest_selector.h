// Quest (Tang et al., 2024): a block's score for a query head is an upper bound on its
// keys' dot products with the query, sum_i max(q_i * min_i, q_i * max_i) over the block's
// per-channel key bounds (kv_block_summaries.h); a KV head takes its query heads' highest
// score. Each KV head reads its sinks, its recent window and the top-scoring other blocks
// up to the budget (ties: the earlier block); with shared_heads, every KV head reads the
// blocks of the best scores over all heads. The KV heads are scored in parallel over the
// query's pool; the selection does not depend on how (max and the order are exact).
#pragma once

#include <vector>

#include "kv/block_selector.h"

namespace tierlm::kv {

class QuestSelector final : public BlockSelector {
 public:
  QuestSelector(const KvSparseOptions& options, int32_t block_size, const KvBlockSummaries* summaries)
      : options_(options), block_size_(block_size), summaries_(summaries) {}
  bool Select(const SelectionQuery& query, uint8_t* skip) override;

 private:
  KvSparseOptions options_;
  int32_t block_size_;
  const KvBlockSummaries* summaries_;
  std::vector<float> scores_;       // [n_head_kv][candidates] (shared heads: row 0 is their max)
  std::vector<int32_t> order_;      // [n_head_kv][candidates]
};

}  // namespace tierlm::kv
