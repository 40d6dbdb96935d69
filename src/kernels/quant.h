// Scalar reference conversions between f32 and every supported tensor type.
// These define what the bytes mean; SIMD kernels are tested against them.
#pragma once

#include <cstdint>

#include "format/ggml_type.h"

namespace tierlm {

// dst[0..n) = the values that n elements of `type` at src encode.
// REQUIRES: n is a multiple of the type's block size; type supported.
void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n);

// Encodes n floats as `type` into dst (RowBytes(type, n) bytes), choosing scales the way
// llama.cpp's reference quantizers do (round-to-nearest, no importance matrix); kLQ2
// (tierlm's own) by a small search for the least squared error.
// REQUIRES: n is a multiple of the type's block size; type supported.
void QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n);

// IEEE half and bfloat16 conversions (round to nearest even).
float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);
// The largest half at or below f, the smallest at or above it (directed rounding: a bound
// stays a bound). NaN stays NaN.
uint16_t F32ToF16Down(float f);
uint16_t F32ToF16Up(float f);
float Bf16ToF32(uint16_t h);
uint16_t F32ToBf16(float f);

}  // namespace tierlm
