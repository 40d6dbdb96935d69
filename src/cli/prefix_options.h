// The prefix cache's flags, for run, chat and serve: --prefix-cache-dir, --prefix-cache-size,
// --redis, --redis-ttl, --no-prefix-cache.
#pragma once

#include <memory>
#include <string>

#include "cli/args.h"
#include "core/status.h"
#include "prefix/open_prefix_cache.h"

namespace tierlm::cli {

struct PrefixFlags {
  std::string dir;
  std::string size = "20G";
  std::string redis;
  int64_t redis_ttl = 0;
  bool off = false;  // --no-prefix-cache (serve): not even the memory tier
};

// with_off: the command keeps prefixes in memory by default (serve), so it takes
// --no-prefix-cache.
void AddPrefixOptions(ArgParser& ap, PrefixFlags* flags, bool with_off);
// InvalidArgument naming the flag for a bad size or TTL; *options filled.
Status ApplyPrefixFlags(const PrefixFlags& flags, prefix::PrefixCacheOptions* options);
// Null when the flags ask for nothing (no tier and, for commands without a memory tier, no
// reuse at all).
Result<std::unique_ptr<prefix::PrefixCache>> OpenPrefixFromFlags(const PrefixFlags& flags, bool memory_by_default);

}  // namespace tierlm::cli
