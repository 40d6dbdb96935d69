// Which SIMD kernel path this CPU can run, and a switch to force a slower one.
//
// Matmul and the ops pick their implementation from ActiveKernelPath(). The path can be
// forced for tests and benchmarks, either with ForceKernelPath() or the environment
// variable TIERLM_KERNEL_PATH=scalar|avx2|avx512|amx (read once, on first use).
#pragma once

#include <optional>
#include <string_view>

namespace tierlm {

enum class KernelPath {
  kScalar,  // portable C++
  kAvx2,    // AVX2 + FMA + F16C
  kAvx512,  // AVX-512 F/BW/VL/DQ + VNNI (BF16 weights use AVX512-BF16 where present: Avx512HasBf16)
  // kAvx512's kernels, with AMX int8 tiles for batched (prefill) Q4_0, Q8_0, Q4_K and Q6_K
  // products (BF16 weights keep the AVX-512 panels; AMX-BF16 is required, not yet used). Each
  // product is computed in kAvx512's f32 order, so the two paths give bit-identical results.
  // Needs the CPU's AMX-TILE/INT8/BF16 and the OS's permission for tile data (Linux 5.16+,
  // asked once per process with arch_prctl).
  kAmx,
};

// Whether `path` runs the AVX-512 kernels (kAvx512 and kAmx).
inline bool UsesAvx512(KernelPath path) { return path == KernelPath::kAvx512 || path == KernelPath::kAmx; }

std::string_view KernelPathName(KernelPath path);
std::optional<KernelPath> ParseKernelPath(std::string_view name);

// Whether this CPU (and OS) can run `path`.
bool KernelPathSupported(KernelPath path);

// Whether the CPU has AVX512-BF16 (vdpbf16ps), which the AVX-512 path's BF16-weight kernels
// use; without it (Ice Lake, Cascade Lake) that path takes BF16 weights through the AVX2
// kernel and runs everything else on AVX-512.
bool Avx512HasBf16();

// The fastest supported path.
KernelPath BestKernelPath();

// The path kernels use now: the forced one, else $TIERLM_KERNEL_PATH if set and
// supported, else BestKernelPath().
KernelPath ActiveKernelPath();

// Forces `path` (nullopt: back to automatic). REQUIRES: KernelPathSupported(*path).
// Not thread-safe with respect to running kernels: call between Matmul calls.
void ForceKernelPath(std::optional<KernelPath> path);

}  // namespace tierlm
