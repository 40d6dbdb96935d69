#include "kv/eviction_policy.h"

#include <algorithm>
#include <cmath>

#include "kv/eviction_policies.h"

namespace tierlm::kv {

Result<KvEvictMode> ParseKvEvictMode(const std::string& name) {
  static constexpr KvEvictMode kAll[] = {KvEvictMode::kNone,   KvEvictMode::kStreaming, KvEvictMode::kH2o,
                                         KvEvictMode::kSnapKv, KvEvictMode::kSirLlm,    KvEvictMode::kLazy,
                                         KvEvictMode::kRetention};
  for (KvEvictMode m : kAll)
    if (name == KvEvictModeName(m)) return m;
  return Status::InvalidArgument("--kv-evict: unknown policy '" + name +
                                 "' (none, streaming, h2o, snapkv, sirllm, lazy, retention)");
}

const char* KvEvictModeName(KvEvictMode mode) {
  switch (mode) {
    case KvEvictMode::kNone: return "none";
    case KvEvictMode::kStreaming: return "streaming";
    case KvEvictMode::kH2o: return "h2o";
    case KvEvictMode::kSnapKv: return "snapkv";
    case KvEvictMode::kSirLlm: return "sirllm";
    case KvEvictMode::kLazy: return "lazy";
    case KvEvictMode::kRetention: return "retention";
  }
  return "?";
}

Status CheckKvEvict(const KvEvictOptions& o, int32_t block_size) {
  if (o.mode == KvEvictMode::kNone) return Status::Ok();
  if (o.sink_blocks < 0 || o.recent_blocks < 0)
    return Status::InvalidArgument("--kv-sink-blocks and --kv-recent-blocks must be >= 0");
  // The sinks, the window and the block being filled, plus one block that can go.
  const int64_t least = static_cast<int64_t>(o.sink_blocks + o.recent_blocks + 2) * block_size;
  if (o.max_tokens < least)
    return Status::InvalidArgument("--kv-max-tokens " + std::to_string(o.max_tokens) + " cannot hold " +
                                   std::to_string(o.sink_blocks) + " sink and " + std::to_string(o.recent_blocks) +
                                   " recent blocks, the block being filled and one more of " +
                                   std::to_string(block_size) + " tokens: at least " + std::to_string(least));
  if (o.window < 1) return Status::InvalidArgument("--kv-evict-window must be >= 1");
  if (!(o.decay > 0 && o.decay <= 1)) return Status::InvalidArgument("--kv-evict-decay must be in (0, 1]");
  if (o.prefill_chunk < 1) return Status::InvalidArgument("--kv-evict prefill chunk must be >= 1");
  return Status::Ok();
}

int64_t KvPositionsFor(const KvEvictOptions& o, int32_t block_size) {
  if (o.mode == KvEvictMode::kNone) return 0;
  return (o.max_tokens / block_size + (o.prefill_chunk + block_size - 1) / block_size + 1) * block_size;
}

std::unique_ptr<EvictionPolicy> MakeEvictionPolicy(const KvEvictOptions& o, int32_t block_size) {
  switch (o.mode) {
    case KvEvictMode::kNone: return nullptr;
    case KvEvictMode::kStreaming: return MakeStreamingEviction();
    case KvEvictMode::kH2o: return MakeH2oEviction(block_size);
    case KvEvictMode::kSnapKv: return MakeSnapKvEviction(block_size, o.window);
    case KvEvictMode::kSirLlm: return MakeSirLlmEviction(block_size);
    case KvEvictMode::kLazy: return MakeLazyEviction(block_size);
    case KvEvictMode::kRetention: return MakeRetentionEviction(block_size, o.decay);
  }
  return nullptr;
}

}  // namespace tierlm::kv
