#include "prefix/open_prefix_cache.h"

#include <cstdlib>

#include "prefix/disk_block_tier.h"
#include "prefix/redis_block_tier.h"

namespace tierlm::prefix {

Result<std::unique_ptr<PrefixCache>> OpenPrefixCache(const PrefixCacheOptions& o) {
  std::unique_ptr<BlockTier> disk, redis;
  if (!o.disk_dir.empty()) {
    DiskTierOptions d;
    d.dir = o.disk_dir;
    d.capacity_bytes = o.disk_bytes;
    // Fault injection for the end-to-end tests (a disk that fills up): never set by users.
    if (const char* v = std::getenv("TIERLM_TEST_PREFIX_DISK_BYTES")) d.inject_disk_bytes = std::strtoull(v, nullptr, 10);
    auto opened = DiskBlockTier::Open(d);
    if (!opened.ok()) return opened.status().WithContext("--prefix-cache-dir");
    disk = std::move(*opened);
  }
  if (!o.redis_url.empty()) {
    RedisTierOptions r;
    r.url = o.redis_url;
    r.ttl_seconds = o.redis_ttl_seconds;
    auto opened = RedisBlockTier::Open(r);
    if (!opened.ok()) return opened.status().WithContext("--redis");
    redis = std::move(*opened);
  }
  return std::make_unique<PrefixCache>(std::move(disk), std::move(redis), o.memory);
}

}  // namespace tierlm::prefix
