// Byte layouts of the GGUF block types tierlm computes with (bit-exact to ggml's).
// Half-precision fields are raw IEEE binary16 bits; read them with F16ToF32.
#pragma once

#include <cstdint>

namespace tierlm {

// 32 elements: x[j] = d * qs[j].
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// 32 elements: x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8), j < 16.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18);

// 256 elements in 8 sub-blocks of 32; sub-block j has a 6-bit scale sc_j and 6-bit min m_j
// packed in `scales` (see UnpackQ4KScaleMin), x = d * sc_j * q - dmin * m_j with q a
// nibble. Bytes qs[32 c .. 32 c + 32) hold sub-block 2c in the low nibbles and 2c + 1 in
// the high nibbles.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// 256 elements in 16 groups of 16; x = d * scales[e / 16] * (q - 32) with q a 6-bit value:
// low 4 bits in ql, high 2 bits in qh (layout in DequantizeRow's Q6_K case).
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// tierlm's low-bit type (GgmlType::kLQ2, never in a GGUF file): 256 elements in 16 groups
// of 16, 2-bit codes q, 4-bit group scale sc and min mn (like ggml's Q2_K, 2.625 bits per
// weight): element 16 g + 4 k + j (g < 16, k < 4, j < 4) is
//   x = d * sc_g * q - dmin * mn_g,   q = (qs[4 g + j] >> 2 k) & 3,
//   sc_g = scales[g] & 15, mn_g = scales[g] >> 4.
// The code order puts group g in int32 lane g of each of the four 2-bit planes of qs, so an
// AVX-512 kernel sums a whole group per lane without shuffles.
struct BlockLQ2 {
  uint8_t qs[64];
  uint8_t scales[16];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockLQ2) == 84);

// Position of element e (< 256) of a BlockLQ2: byte of qs and bit shift.
inline int LQ2Byte(int e) { return 4 * (e / 16) + (e % 4); }
inline int LQ2Shift(int e) { return 2 * ((e % 16) / 4); }

// Sub-block j (< 8) of a Q4_K block: its 6-bit scale and min.
inline void UnpackQ4KScaleMin(const uint8_t* scales, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

}  // namespace tierlm
