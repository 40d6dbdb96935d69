// tierlm bench --prefix N: time to first token of an N-token prompt cold, and warm from
// each tier of the prefix cache (memory; the disk after a restart; Redis from another
// instance), with the bytes each hit moved.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "runtime/engine.h"

namespace tierlm::cli {

struct PrefixBenchOptions {
  int64_t n_prompt = 4096;
  int32_t repetitions = 3;
  std::string dir;        // the disk tier's directory; empty: a fresh one, removed after
  std::string redis_url;  // empty: no Redis rows
  uint64_t seed = 1;
};

// Prints a markdown table on stdout.
Status RunPrefixBench(Engine& e, const PrefixBenchOptions& options);

}  // namespace tierlm::cli
