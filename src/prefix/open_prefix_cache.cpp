#include "prefix/open_prefix_cache.h"

namespace tierlm::prefix {

Result<std::unique_ptr<PrefixCache>> OpenPrefixCache(const PrefixCacheOptions& o) {
  if (!o.disk_dir.empty()) return Status::Unsupported("--prefix-cache-dir: the disk tier is not built yet");
  if (!o.redis_url.empty()) return Status::Unsupported("--redis: the Redis tier is not built yet");
  return std::make_unique<PrefixCache>(nullptr, nullptr, o.memory);
}

}  // namespace tierlm::prefix
