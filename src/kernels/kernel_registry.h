// The table of matmul kernels each SIMD path provides, and how Matmul calls them.
#pragma once

#include <cstdint>
#include <span>

#include "format/ggml_type.h"
#include "kernels/activation_format.h"
#include "kernels/cpu_features.h"

namespace tierlm {

// One call computes a [n_tok][n_rows] block of outputs:
//   y[t * y_stride + r] = dot(weight row r, activation row t)   r < n_rows, t < n_tok
// Weight row r starts at w + r * w_row_bytes (raw GGUF blocks); activation row t starts at
// act + t * act.row_bytes, in the format the kernel's entry names. Kernels tile rows and
// tokens in registers; callers keep n_rows x n_tok cache-sized.
struct GemmArgs {
  const uint8_t* w;
  int64_t w_row_bytes;
  int64_t n_rows;
  const uint8_t* act;
  ActLayout act_layout;
  int64_t n_tok;
  int64_t n_in;
  float* y;
  int64_t y_stride;
};
using GemmFn = void (*)(const GemmArgs& args);

// Weight types with kernels, as indices into KernelSet::entries.
enum KernelType : int { kKtF32, kKtF16, kKtBf16, kKtQ8_0, kKtQ4_0, kKtQ4_K, kKtQ6_K, kKtLQ2, kNumKernelTypes };

// The index for `type`, or -1 when no kernel handles it.
inline int KernelTypeIndex(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return kKtF32;
    case GgmlType::kF16: return kKtF16;
    case GgmlType::kBF16: return kKtBf16;
    case GgmlType::kQ8_0: return kKtQ8_0;
    case GgmlType::kQ4_0: return kKtQ4_0;
    case GgmlType::kQ4_K: return kKtQ4_K;
    case GgmlType::kQ6_K: return kKtQ6_K;
    case GgmlType::kLQ2: return kKtLQ2;
    default: return -1;
  }
}

struct KernelSet {
  struct Entry {
    ActFormat act;
    GemmFn gemm;
    int row_tile;  // Matmul splits rows between threads in multiples of this
    // Optional batched (prefill) kernel, used when n_tok >= prefill_min_tok. It is called
    // once per thread with the thread's whole row range (a multiple of prefill_row_tile
    // rows, except at the end) and every token, activations in prefill_act, and does its
    // own cache blocking (e.g. repacking a panel of rows once for all tokens). It must
    // compute each (row, token) product with exactly gemm's f32 operations, in the same
    // order (batch invariance, matmul.h); only integer partial sums may be grouped freely.
    ActFormat prefill_act = ActFormat::kF32;
    GemmFn prefill = nullptr;
    int prefill_row_tile = 1;
    int prefill_min_tok = 0;
    // Optional second batched kernel for larger batches (AMX tiles), called as `prefill` is,
    // when n_tok >= large_min_tok; the same rule of one f32 order applies.
    ActFormat large_act = ActFormat::kF32;
    GemmFn large = nullptr;
    int large_row_tile = 1;
    int large_min_tok = 0;
  };
  Entry entries[kNumKernelTypes];
};

// The batched kernel an entry runs for n_tok tokens: `large` from large_min_tok, else
// `prefill` from prefill_min_tok; fn null: neither (the plain gemm kernel).
struct BatchedKernel {
  GemmFn fn = nullptr;
  ActFormat act = ActFormat::kF32;
  int row_tile = 1;
};
inline BatchedKernel BatchedKernelFor(const KernelSet::Entry& e, int64_t n_tok) {
  if (e.large != nullptr && n_tok >= e.large_min_tok) return {e.large, e.large_act, e.large_row_tile};
  if (e.prefill != nullptr && n_tok >= e.prefill_min_tok) return {e.prefill, e.prefill_act, e.prefill_row_tile};
  return {};
}

// Each defined in matmul_<path>.cpp; the AVX ones may only be called when supported.
const KernelSet& ScalarKernels();
const KernelSet& Avx2Kernels();
const KernelSet& Avx512Kernels();
// Avx512Kernels() with AMX prefill kernels (matmul_amx.cpp).
const KernelSet& AmxKernels();
// The scalar kLQ2 kernel (kQ8 activations), which the AVX2 set shares.
void ScalarGemmLQ2(const GemmArgs& args);
// The AVX-512 unsigned-weight panel kernels for Q4_0 / Q8_0 batches (upanel_gemm_avx512.cpp);
// kQ8 activations. Only where the AVX-512 path is supported.
void UPanelGemmQ4_0(const GemmArgs& args);
void UPanelGemmQ8_0(const GemmArgs& args);

inline const KernelSet& KernelsFor(KernelPath path) {
  switch (path) {
    case KernelPath::kAmx: return AmxKernels();
    case KernelPath::kAvx512: return Avx512Kernels();
    case KernelPath::kAvx2: return Avx2Kernels();
    default: return ScalarKernels();
  }
}

struct WeightMatrix;
class ThreadPool;

// Matmul (matmul.h) with an explicit kernel set instead of ActiveKernelPath()'s.
void MatmulWithKernels(const KernelSet& kernels, const WeightMatrix& w, const float* x,
                       int64_t x_stride, int64_t n_tok, float* y, int64_t y_stride,
                       ThreadPool* pool);
struct MatmulJob;
// MatmulBatch with a given kernel set (tests run every path).
void MatmulBatchWithKernels(const KernelSet& kernels, std::span<const MatmulJob> jobs, ThreadPool* pool);

}  // namespace tierlm
