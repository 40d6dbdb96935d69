// Which SIMD kernel path this CPU can run, and a switch to force a slower one.
//
// Matmul and the ops pick their implementation from ActiveKernelPath(). The path can be
// forced for tests and benchmarks, either with ForceKernelPath() or the environment
// variable TIERLM_KERNEL_PATH=scalar|avx2|avx512 (read once, on first use).
#pragma once

#include <optional>
#include <string_view>

namespace tierlm {

enum class KernelPath {
  kScalar,  // portable C++
  kAvx2,    // AVX2 + FMA + F16C
  kAvx512,  // AVX-512 F/BW/VL/DQ + VNNI + BF16
};

std::string_view KernelPathName(KernelPath path);
std::optional<KernelPath> ParseKernelPath(std::string_view name);

// Whether this CPU (and OS) can run `path`.
bool KernelPathSupported(KernelPath path);

// The fastest supported path.
KernelPath BestKernelPath();

// The path kernels use now: the forced one, else $TIERLM_KERNEL_PATH if set and
// supported, else BestKernelPath().
KernelPath ActiveKernelPath();

// Forces `path` (nullopt: back to automatic). REQUIRES: KernelPathSupported(*path).
// Not thread-safe with respect to running kernels: call between Matmul calls.
void ForceKernelPath(std::optional<KernelPath> path);

}  // namespace tierlm
