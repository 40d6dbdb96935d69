#include "kv/streaming_selector.h"

#include <algorithm>

namespace tierlm::kv {

bool StreamingSelector::Select(const SelectionQuery& query, uint8_t* skip) {
  const int64_t n_blocks = static_cast<int64_t>(query.table.size());
  const int64_t budget = std::max<int64_t>(1, options_.budget_tokens / block_size_);
  if (n_blocks <= budget) return false;
  const int64_t sinks = std::min<int64_t>(options_.sink_blocks, budget - 1);
  const int64_t window_from = n_blocks - (budget - sinks);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const uint8_t s = (b >= sinks && b < window_from) ? 1 : 0;
    for (int64_t g = 0; g < n_head_kv_; ++g) skip[b * n_head_kv_ + g] = s;
  }
  return true;
}

}  // namespace tierlm::kv
