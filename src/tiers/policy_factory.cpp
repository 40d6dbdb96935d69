#include "tiers/policy_factory.h"

#include <cstdlib>

#include "tiers/lfu_decay_policy.h"
#include "tiers/lru_policy.h"
#include "tiers/score_policy.h"

namespace tierlm {

const std::vector<std::string>& OnlinePolicyNames() {
  static const std::vector<std::string> names = {"lru", "lfu-decay", "score"};
  return names;
}

Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(const std::string& name, int32_t n_layer,
                                                           std::function<int32_t(EntryId)> layer_of) {
  if (name == "lru") return std::unique_ptr<EvictionPolicy>(std::make_unique<LruPolicy>());
  if (name == "lfu-decay" || name == "lfu")
    return std::unique_ptr<EvictionPolicy>(std::make_unique<LfuDecayPolicy>());
  if (name == "score") {
    if (n_layer <= 0 || !layer_of)
      return Status::InvalidArgument("the score policy needs the number of layers and each entry's layer");
    return std::unique_ptr<EvictionPolicy>(std::make_unique<ScorePolicy>(n_layer, std::move(layer_of)));
  }
  return Status::NotFound("no expert cache policy named '" + name + "' (choices: lru, lfu-decay, score)");
}

int32_t LayerOfTensorName(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  const char* p = name.c_str() + 4;
  char* end = nullptr;
  const long v = std::strtol(p, &end, 10);
  if (end == p || *end != '.' || v < 0 || v > 1 << 20) return -1;
  return static_cast<int32_t>(v);
}

}  // namespace tierlm
