// StreamingLLM as an eviction policy: the sinks and the recent window stay, the oldest of
// the rest goes.
#include "kv/eviction_policies.h"

namespace tierlm::kv {
namespace {

class StreamingEviction final : public EvictionPolicy {
 public:
  int64_t Victim(std::span<const int64_t> candidates) override { return candidates.front(); }
  void Truncate(int64_t) override {}
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeStreamingEviction() { return std::make_unique<StreamingEviction>(); }

}  // namespace tierlm::kv
