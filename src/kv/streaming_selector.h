// StreamingLLM (Xiao et al., 2023) as a selection: the attention sinks and the most recent
// blocks up to the budget, the same for every KV head and every query. What eviction to
// that window would keep, without the blocks being freed yet (this reads the window only;
// the blocks outside it stay in the cache): its quality is the eviction policy's.
#pragma once

#include "kv/block_selector.h"

namespace tierlm::kv {

class StreamingSelector final : public BlockSelector {
 public:
  StreamingSelector(const KvSparseOptions& options, int32_t block_size, int64_t n_head_kv)
      : options_(options), block_size_(block_size), n_head_kv_(n_head_kv) {}
  bool Select(const SelectionQuery& query, uint8_t* skip) override;

 private:
  KvSparseOptions options_;
  int32_t block_size_;
  int64_t n_head_kv_;
};

}  // namespace tierlm::kv
