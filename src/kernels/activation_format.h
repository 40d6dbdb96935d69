// The forms activations are converted to before a matmul, one row per token.
//
// Each kernel path states, per weight type, which form its dot products read (see
// kernel_registry.h). Matmul converts every token's activations once, into a buffer shared
// by all threads; rows are 64-byte aligned and padded with zeros.
#pragma once

#include <cstdint>

namespace tierlm {

enum class ActFormat {
  kF32,   // float x[n_in]
  kBf16,  // bf16 x[n_in], rounded to nearest even
  // As kBf16, but the pairs (x[2j], x[2j + 1]) (the last padded with 0 for an odd n_in)
  // reordered for the AVX-512 BF16 panel kernel's 16 chains: with P = ceil(n_in / 32), pair
  // j at pair slot (j % 16) P + j / 16; unused slots zero.
  kBf16Chains,
  // 32-element blocks quantized like Q8_0 (d = amax / 127, q = round(x / d)), the block
  // count nb rounded up to even with zero blocks:
  //   int8 qs[32 * nb] | float d[nb] | int32 sum[nb] (sum of the block's qs)
  kQ8,
  // As kQ8, but each pair of blocks (b, b + 1) stores its 64 qs as
  //   b[0..16) b+1[0..16) b[16..32) b+1[16..32)
  // which is the order the AVX-512 kernels unpack Q4_0 nibbles in.
  kQ8Pair,
  // 256-element blocks like ggml's Q8_K (d = amax / 127):
  //   int8 qs[n_in] | float d[n_in / 256] | int16 bsums[n_in / 16] (sums of 16 qs)
  kQ8K,
  // As kQ8 (same rounding), but qs stored as unsigned bytes q + 128 (for vpdpbusd with the
  // activations as the unsigned operand); the sums are not written.
  kQ8U,
  // As kQ8K (same rounding), qs stored as q + 128, and instead of bsums one sum per 32
  // elements: sum32[g] = sum of the 32 signed qs:
  //   uint8 qs[n_in] | float d[n_in / 256] | int16 sum32[n_in / 32]
  kQ8KU,
  // As kQ8KU without the + 128 (signed qs, for AMX's signed x signed tile products):
  //   int8 qs[n_in] | float d[n_in / 256] | int16 sum32[n_in / 32]
  kQ8KS,
  // For kLQ2 weights (AVX-512): 32-element blocks quantized as kQ8 (same rounding), each
  // 256 elements' qs reordered like a BlockLQ2's codes (position 64 k + 4 g + j holds element
  // 16 g + 4 k + j), and per 16-element group g its block's scale and d * (sum of its qs):
  //   int8 qs[n_in] | float d16[n_in / 16] | float dsum16[n_in / 16]
  kQ8LQ2,
};

struct ActLayout {
  int64_t row_bytes;   // bytes per token row, a multiple of 64
  int64_t d_offset;    // byte offset of the scales (quantized forms)
  int64_t sum_offset;  // byte offset of the block sums (quantized forms)
};

// REQUIRES: n_in a multiple of 32 (kQ8, kQ8Pair) or 256 (kQ8K, kQ8KU, kQ8KS, kQ8LQ2).
ActLayout GetActLayout(ActFormat format, int64_t n_in);

// Writes one row (GetActLayout(format, n_in).row_bytes bytes) from x[0..n_in).
void ConvertActivationRow(ActFormat format, const float* x, int64_t n_in, uint8_t* dst);

// The AVX-512 conversion (bit-identical results); false when it does not handle `format`.
// Only callable when the AVX-512 kernel path is supported.
bool ConvertActivationRowAvx512(ActFormat format, const float* x, int64_t n_in, uint8_t* dst);

}  // namespace tierlm
