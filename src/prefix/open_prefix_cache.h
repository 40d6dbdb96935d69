// Opens a PrefixCache with the tiers a user asked for (--prefix-cache-dir, --redis).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "prefix/prefix_cache.h"

namespace tierlm::prefix {

struct PrefixCacheOptions {
  bool memory = true;            // reuse blocks still in the paged cache
  std::string disk_dir;          // empty: no disk tier
  uint64_t disk_bytes = 20ull << 30;
  std::string redis_url;         // empty: no Redis tier
  int64_t redis_ttl_seconds = 0; // > 0: keys expire
};

// Errors: a directory that cannot be created or is locked by another process, a size too
// small for one block, a malformed Redis URL (each naming the flag). A Redis server that
// is down is no error: its tier misses until it answers.
Result<std::unique_ptr<PrefixCache>> OpenPrefixCache(const PrefixCacheOptions& options);

}  // namespace tierlm::prefix
