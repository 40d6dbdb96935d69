#include "cli/prefix_options.h"

namespace tierlm::cli {

void AddPrefixOptions(ArgParser& ap, PrefixFlags* flags, bool with_off) {
  ap.Add({"--prefix-cache-dir"}, &flags->dir,
         "keep computed prompt prefixes (their KV blocks) in this directory, so that a later run or a restarted "
         "server reuses them (default: none)");
  ap.Add({"--prefix-cache-size"}, &flags->size, "bound on --prefix-cache-dir's size, e.g. 20G (default 20G)");
  ap.Add({"--redis"}, &flags->redis,
         "share computed prompt prefixes through this Redis server, e.g. redis://127.0.0.1:6379 (default: none)");
  ap.Add({"--redis-ttl"}, &flags->redis_ttl, "seconds a prefix stays in Redis; 0: until Redis evicts it (default 0)");
  if (with_off)
    ap.Flag({"--no-prefix-cache"}, &flags->off, "do not reuse computed prompt prefixes at all, not even in memory");
}

Status ApplyPrefixFlags(const PrefixFlags& flags, prefix::PrefixCacheOptions* o) {
  if (flags.off && (!flags.dir.empty() || !flags.redis.empty()))
    return Status::InvalidArgument("--no-prefix-cache contradicts --prefix-cache-dir / --redis");
  auto size = ParseByteSize(flags.size);
  if (!size.ok()) return size.status().WithContext("--prefix-cache-size");
  if (*size == 0) return Status::InvalidArgument("--prefix-cache-size must be positive");
  if (flags.redis_ttl < 0) return Status::InvalidArgument("--redis-ttl must not be negative (0: no expiry)");
  o->memory = !flags.off;
  o->disk_dir = flags.dir;
  o->disk_bytes = *size;
  o->redis_url = flags.redis;
  o->redis_ttl_seconds = flags.redis_ttl;
  return Status::Ok();
}

Result<std::unique_ptr<prefix::PrefixCache>> OpenPrefixFromFlags(const PrefixFlags& flags, bool memory_by_default) {
  prefix::PrefixCacheOptions o;
  TIERLM_RETURN_IF_ERROR(ApplyPrefixFlags(flags, &o));
  o.memory = o.memory && memory_by_default;
  if (!o.memory && o.disk_dir.empty() && o.redis_url.empty()) return std::unique_ptr<prefix::PrefixCache>();
  return prefix::OpenPrefixCache(o);
}

}  // namespace tierlm::cli
