#include "kernels/cpu_features.h"

#include <atomic>
#include <cstdlib>

namespace tierlm {
namespace {

// -1: automatic; otherwise a KernelPath value.
std::atomic<int> g_forced{-1};

KernelPath EnvOrBestPath() {
  static const KernelPath path = [] {
    if (const char* env = std::getenv("TIERLM_KERNEL_PATH")) {
      if (auto p = ParseKernelPath(env); p && KernelPathSupported(*p)) return *p;
    }
    return BestKernelPath();
  }();
  return path;
}

}  // namespace

std::string_view KernelPathName(KernelPath path) {
  switch (path) {
    case KernelPath::kScalar:
      return "scalar";
    case KernelPath::kAvx2:
      return "avx2";
    case KernelPath::kAvx512:
      return "avx512";
  }
  return "unknown";
}

std::optional<KernelPath> ParseKernelPath(std::string_view name) {
  for (KernelPath p : {KernelPath::kScalar, KernelPath::kAvx2, KernelPath::kAvx512})
    if (KernelPathName(p) == name) return p;
  return std::nullopt;
}

bool KernelPathSupported(KernelPath path) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  switch (path) {
    case KernelPath::kScalar:
      return true;
    case KernelPath::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
    case KernelPath::kAvx512:
      return KernelPathSupported(KernelPath::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return path == KernelPath::kScalar;
#endif
}

KernelPath BestKernelPath() {
  static const KernelPath best = [] {
    if (KernelPathSupported(KernelPath::kAvx512)) return KernelPath::kAvx512;
    if (KernelPathSupported(KernelPath::kAvx2)) return KernelPath::kAvx2;
    return KernelPath::kScalar;
  }();
  return best;
}

KernelPath ActiveKernelPath() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<KernelPath>(forced);
  return EnvOrBestPath();
}

void ForceKernelPath(std::optional<KernelPath> path) {
  if (path && !KernelPathSupported(*path)) std::abort();
  g_forced.store(path ? static_cast<int>(*path) : -1, std::memory_order_relaxed);
}

}  // namespace tierlm
