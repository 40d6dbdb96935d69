// Eviction policies by name, for the expert cache (`--moe-policy`) and the simulators.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "tiers/eviction_policy.h"

namespace tierlm {

// The online expert policies: "lru", "lfu-decay", "score".
const std::vector<std::string>& OnlinePolicyNames();

// A fresh policy. layer_of(id) in [0, n_layer) is needed by "score" only (the layer an
// entry belongs to). NotFound naming the choices for another name.
Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(const std::string& name, int32_t n_layer,
                                                           std::function<int32_t(EntryId)> layer_of);

// The layer of a tensor or expert-slice name "blk.N....": N, or -1 if it has none.
int32_t LayerOfTensorName(const std::string& name);

}  // namespace tierlm
