#include "kv/block_selector.h"

#include "kv/quest_selector.h"
#include "kv/streaming_selector.h"

namespace tierlm::kv {

Result<KvSparseMode> ParseKvSparseMode(const std::string& name) {
  if (name == "exact" || name == "none") return KvSparseMode::kExact;
  if (name == "quest") return KvSparseMode::kQuest;
  if (name == "streaming") return KvSparseMode::kStreaming;
  return Status::InvalidArgument("--kv-sparse: unknown mode '" + name + "' (exact, quest, streaming)");
}

const char* KvSparseModeName(KvSparseMode mode) {
  switch (mode) {
    case KvSparseMode::kExact: return "exact";
    case KvSparseMode::kQuest: return "quest";
    case KvSparseMode::kStreaming: return "streaming";
  }
  return "?";
}

Status CheckKvSparse(const KvSparseOptions& o, int32_t block_size) {
  if (o.sink_blocks < 0 || o.recent_blocks < 1 || o.dense_layers < 0)
    return Status::InvalidArgument("--kv-sparse: sinks (" + std::to_string(o.sink_blocks) + ") and dense layers (" +
                                   std::to_string(o.dense_layers) + ") must be >= 0, the recent window (" +
                                   std::to_string(o.recent_blocks) + " blocks) >= 1");
  const int64_t floor = static_cast<int64_t>(o.sink_blocks + o.recent_blocks + 1) * block_size;
  if (o.mode != KvSparseMode::kExact && o.budget_tokens < floor)
    return Status::InvalidArgument("--kv-budget " + std::to_string(o.budget_tokens) +
                                   " tokens is below the sinks, the recent window and one selected block (" +
                                   std::to_string(floor) + " tokens at --kv-block " + std::to_string(block_size) + ")");
  return Status::Ok();
}

std::unique_ptr<BlockSelector> MakeBlockSelector(const KvSparseOptions& options, int32_t block_size,
                                                 const KvBlockSummaries* summaries) {
  switch (options.mode) {
    case KvSparseMode::kExact: return nullptr;
    case KvSparseMode::kQuest: return std::make_unique<QuestSelector>(options, block_size, summaries);
    case KvSparseMode::kStreaming:
      return std::make_unique<StreamingSelector>(options, block_size, summaries->n_head_kv());
  }
  return nullptr;
}

}  // namespace tierlm::kv
