#include "moe/cache_simulator.h"

#include <algorithm>
#include <limits>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace tierlm {

std::vector<EntryId> ExpertAccesses(const RoutingTrace& trace) {
  std::vector<EntryId> out;
  const int32_t K = trace.n_used();
  out.reserve(static_cast<size_t>(trace.n_tokens() * trace.n_layer() * K));
  std::vector<int32_t> chosen(static_cast<size_t>(K));
  for (int64_t t = 0; t < trace.n_tokens(); ++t)
    for (int32_t l = 0; l < trace.n_layer(); ++l) {
      for (int32_t k = 0; k < K; ++k) chosen[static_cast<size_t>(k)] = trace.expert(t, l, k);
      std::sort(chosen.begin(), chosen.end());
      for (int32_t e : chosen) out.push_back(static_cast<EntryId>(l * trace.n_expert() + e));
    }
  return out;
}

CacheSimResult SimulateCache(std::span<const EntryId> accesses, EvictionPolicy& policy, int64_t capacity) {
  CacheSimResult r;
  std::unordered_set<EntryId> resident;
  for (EntryId id : accesses) {
    if (resident.count(id)) {
      ++r.hits;
      policy.OnAccess(id);
      continue;
    }
    ++r.misses;
    if (static_cast<int64_t>(resident.size()) >= capacity) {
      EntryId victim = id;
      bool found = false;
      policy.VisitVictims([&](EntryId v) {
        if (!resident.count(v)) return true;  // a policy bug; skip rather than corrupt the count
        victim = v;
        found = true;
        return false;
      });
      if (!found) continue;  // nothing evictable: the access is served without caching
      policy.OnErase(victim);
      resident.erase(victim);
    }
    resident.insert(id);
    policy.OnInsert(id);
    policy.OnAccess(id);
  }
  return r;
}

CacheSimResult SimulateCache(const RoutingTrace& trace, EvictionPolicy& policy, int64_t capacity) {
  const std::vector<EntryId> accesses = ExpertAccesses(trace);
  return SimulateCache(accesses, policy, capacity);
}

CacheSimResult SimulateBelady(std::span<const EntryId> accesses, int64_t capacity) {
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  const int64_t n = static_cast<int64_t>(accesses.size());
  if (capacity < 1) return CacheSimResult{0, n};
  std::vector<int64_t> next_use(static_cast<size_t>(n));
  std::unordered_map<EntryId, int64_t> seen;
  for (int64_t i = n - 1; i >= 0; --i) {
    auto it = seen.find(accesses[i]);
    next_use[static_cast<size_t>(i)] = it == seen.end() ? kNever : it->second;
    seen[accesses[i]] = i;
  }
  CacheSimResult r;
  // Resident entries keyed by (next use, -id): the last element is the victim (farthest,
  // then lower id).
  std::set<std::pair<int64_t, int64_t>> by_next;
  std::unordered_map<EntryId, int64_t> resident;  // id -> its next use
  for (int64_t i = 0; i < n; ++i) {
    const EntryId id = accesses[i];
    const int64_t nu = next_use[static_cast<size_t>(i)];
    auto it = resident.find(id);
    if (it != resident.end()) {
      ++r.hits;
      by_next.erase({it->second, -static_cast<int64_t>(id)});
      it->second = nu;
      by_next.insert({nu, -static_cast<int64_t>(id)});
      continue;
    }
    ++r.misses;
    if (static_cast<int64_t>(resident.size()) >= capacity) {
      auto victim = std::prev(by_next.end());
      resident.erase(static_cast<EntryId>(-victim->second));
      by_next.erase(victim);
    }
    resident[id] = nu;
    by_next.insert({nu, -static_cast<int64_t>(id)});
  }
  return r;
}

CacheSimResult SimulateBelady(const RoutingTrace& trace, int64_t capacity) {
  const std::vector<EntryId> accesses = ExpertAccesses(trace);
  return SimulateBelady(accesses, capacity);
}

}  // namespace tierlm
