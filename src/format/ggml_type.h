// Tensor element types as numbered by GGUF (ggml's type ids), with their block layouts.
//
// A quantized type stores `block_size` elements in `type_size` bytes. A row of n
// elements (n a multiple of block_size) occupies n / block_size * type_size bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tierlm {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  // tierlm's own encodings, never read from or written to a GGUF file (GetTypeTraits does
  // not know them, so a GGUF tensor with such an id is rejected). Ids far above ggml's.
  kLQ2 = 0x10001,  // "lq2": low-bit expert copies, 2.625 bits/weight (block_types.h)
};

struct GgmlTypeTraits {
  std::string_view name;  // "q4_K", as llama.cpp prints it
  int64_t block_size;     // elements per block (1 for plain types)
  int64_t type_size;      // bytes per block
  bool supported;         // tierlm can compute with it
};

// Traits for a type id GGUF defines, or nullopt (unknown ids and tierlm-internal types).
std::optional<GgmlTypeTraits> GetTypeTraits(uint32_t type_id);
// Traits for a known enum value, internal types included (never fails for enumerators).
const GgmlTypeTraits& TypeTraits(GgmlType type);
inline std::string_view TypeName(GgmlType t) { return TypeTraits(t).name; }

// Bytes for a row of n elements; n must be a multiple of the block size.
inline int64_t RowBytes(GgmlType t, int64_t n) {
  const auto& tr = TypeTraits(t);
  return n / tr.block_size * tr.type_size;
}

// Parses "q4_0", "Q4_K", "bf16", ... (case-insensitive) into a GGUF type (not internal ones).
std::optional<GgmlType> ParseTypeName(std::string_view name);

// Super-block size of the k-quants.
inline constexpr int64_t kQK_K = 256;

}  // namespace tierlm
