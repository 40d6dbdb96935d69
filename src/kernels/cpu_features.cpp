#include "kernels/cpu_features.h"

#include <atomic>
#include <cstdlib>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

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

// AMX: CPUID leaf 7 EDX bits 22 (BF16), 24 (TILE), 25 (INT8), the OS saving the tile state
// (XCR0 bits 17-18), and Linux granting this process the tile data (ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA), which it must ask for before the first tile instruction.
bool AmxUsable() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool usable = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24, kAmxInt8 = 1u << 25;
    if ((d & (kAmxBf16 | kAmxTile | kAmxInt8)) != (kAmxBf16 | kAmxTile | kAmxInt8)) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & (3u << 17)) != (3u << 17)) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
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
    case KernelPath::kAmx:
      return "amx";
  }
  return "unknown";
}

std::optional<KernelPath> ParseKernelPath(std::string_view name) {
  for (KernelPath p : {KernelPath::kScalar, KernelPath::kAvx2, KernelPath::kAvx512, KernelPath::kAmx})
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
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
    case KernelPath::kAmx:
      return KernelPathSupported(KernelPath::kAvx512) && AmxUsable();
  }
  return false;
#else
  return path == KernelPath::kScalar;
#endif
}

bool Avx512HasBf16() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return KernelPathSupported(KernelPath::kAvx512) && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

KernelPath BestKernelPath() {
  static const KernelPath best = [] {
    if (KernelPathSupported(KernelPath::kAmx)) return KernelPath::kAmx;
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
