#include "kernels/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/activation_format.h"
#include "kernels/block_types.h"
#include "kernels/cpu_features.h"

namespace tierlm {
namespace {

float Bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(F16Test, KnownValues) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToF16(0.5f), 0x3800);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);  // largest finite
  EXPECT_EQ(F32ToF16(65519.0f), 0x7BFF);  // below the halfway point to 65536
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);  // halfway: ties to even (inf)
  EXPECT_EQ(F32ToF16(1e9f), 0x7C00);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xFC00);
  const uint16_t nan = F32ToF16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_NE(F32ToF16(Bits(0x7F800001u)) & 0x03FF, 0);  // signalling nan stays nan

  EXPECT_FLOAT_EQ(F16ToF32(0x3C00), 1.0f);
  EXPECT_FLOAT_EQ(F16ToF32(0xC000), -2.0f);
  EXPECT_FLOAT_EQ(F16ToF32(0x7BFF), 65504.0f);
  EXPECT_FLOAT_EQ(F16ToF32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isinf(F16ToF32(0x7C00)));
  EXPECT_LT(F16ToF32(0xFC00), 0.0f);
  EXPECT_TRUE(std::isnan(F16ToF32(0x7E00)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7C01)));
}

TEST(F16Test, RoundsToNearestEven) {
  // Between 1 and 1 + 2^-10 (0x3C01): halfway ties to the even 0x3C00.
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  // Between 0x3C01 and 0x3C02: halfway ties to the even 0x3C02.
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -12)), 0x3C00);
}

TEST(F16Test, Subnormals) {
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);      // smallest subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);      // half of it: ties to even 0
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001);      // above half
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);      // 1.5 steps: ties to even 2
  EXPECT_EQ(F32ToF16(-std::ldexp(1023.0f, -24)), 0x83FF);  // largest subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1023.5f, -24)), 0x0400);   // rounds up into the normals
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400);      // smallest normal
  EXPECT_EQ(F32ToF16(1e-10f), 0x0000);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(0x83FF), -std::ldexp(1023.0f, -24));
}

TEST(F16Test, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), h) << std::hex << h;
  }
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t HardwareF32ToF16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, 0));
}
TEST(F16Test, MatchesF16cOnRandomBits) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C";
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    // Exponents concentrated around the f16 range, so subnormals and overflow are hit.
    const uint32_t exp = 96 + rng() % 48;
    const uint32_t bits = (rng() & 0x807FFFFFu) | (exp << 23);
    ASSERT_EQ(F32ToF16(Bits(bits)), HardwareF32ToF16(Bits(bits))) << std::hex << bits;
  }
}
#endif

TEST(Bf16Test, KnownValuesAndRounding) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBf16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToBf16(Bits(0x3F808000u)), 0x3F80);  // tie, even below
  EXPECT_EQ(F32ToBf16(Bits(0x3F818000u)), 0x3F82);  // tie, odd below: rounds up
  EXPECT_EQ(F32ToBf16(Bits(0x3F808001u)), 0x3F81);  // above the tie
  EXPECT_EQ(F32ToBf16(Bits(0x7F7FFFFFu)), 0x7F80);  // max float rounds to inf
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(F32ToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(F32ToBf16(Bits(0x00018000u)), 0x0002);  // subnormal tie to even
  EXPECT_EQ(F32ToBf16(Bits(0x00008000u)), 0x0000);
  const uint16_t nan = F32ToBf16(Bits(0x7F800001u));  // payload would round away
  EXPECT_TRUE(std::isnan(Bf16ToF32(nan)));
  EXPECT_EQ(Bf16ToF32(0x3F80), 1.0f);
  EXPECT_EQ(Bf16ToF32(0x0001), std::ldexp(1.0f, -133));
  EXPECT_EQ(Bf16ToF32(0xC0A0), -5.0f);
}

TEST(DequantizeTest, Q8_0HandBuilt) {
  BlockQ8_0 b[2];
  b[0].d = 0x3800;  // 0.5
  for (int j = 0; j < 32; ++j) b[0].qs[j] = static_cast<int8_t>(j - 16);
  b[1].d = 0xC000;  // -2
  std::memset(b[1].qs, 0, 32);
  b[1].qs[0] = 127;
  b[1].qs[1] = -128;
  b[1].qs[31] = 3;
  float y[64];
  DequantizeRow(GgmlType::kQ8_0, b, y, 64);
  EXPECT_EQ(y[0], -8.0f);
  EXPECT_EQ(y[16], 0.0f);
  EXPECT_EQ(y[31], 7.5f);
  EXPECT_EQ(y[32], -254.0f);
  EXPECT_EQ(y[33], 256.0f);
  EXPECT_EQ(y[34], 0.0f);
  EXPECT_EQ(y[63], -6.0f);
}

TEST(DequantizeTest, Q4_0HandBuilt) {
  BlockQ4_0 b[2];
  b[0].d = 0x3C00;  // 1
  for (int j = 0; j < 16; ++j) b[0].qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  b[1].d = 0x4000;  // 2
  std::memset(b[1].qs, 0x80, 16);  // low nibble 0, high nibble 8
  b[1].qs[5] = 0x3F;               // low 15, high 3
  float y[64];
  DequantizeRow(GgmlType::kQ4_0, b, y, 64);
  EXPECT_EQ(y[0], -8.0f);   // low nibble 0
  EXPECT_EQ(y[15], 7.0f);   // low nibble 15
  EXPECT_EQ(y[16], 7.0f);   // high nibble of qs[0] = 15
  EXPECT_EQ(y[31], -8.0f);  // high nibble of qs[15] = 0
  EXPECT_EQ(y[20], 3.0f);   // high nibble of qs[4] = 11
  EXPECT_EQ(y[32], -16.0f);
  EXPECT_EQ(y[48], 0.0f);
  EXPECT_EQ(y[37], 14.0f);  // 2 * (15 - 8)
  EXPECT_EQ(y[53], -10.0f); // 2 * (3 - 8)
}

TEST(DequantizeTest, Q4_KHandBuilt) {
  // Sub-block scales and mins:  sc = {1, 2, 3, 63, 17, 32, 48, 5}
  //                             m  = {0, 1, 63, 4, 33, 16, 2, 60}
  // packed by hand: bytes 0-3 hold sc[0..4) low 6 bits with sc[4..8) >> 4 in bits 6-7,
  // bytes 4-7 hold m[0..4) with m[4..8) >> 4 on top, bytes 8-11 hold the low nibbles of
  // sc[4..8) (low) and m[4..8) (high).
  BlockQ4_K b;
  const uint8_t scales[12] = {0x41, 0x82, 0xC3, 0x3F, 0x80, 0x41, 0x3F, 0xC4,
                              0x11, 0x00, 0x20, 0xC5};
  std::memcpy(b.scales, scales, 12);
  b.d = 0x3C00;     // 1
  b.dmin = 0x3800;  // 0.5
  for (int k = 0; k < 128; ++k) b.qs[k] = static_cast<uint8_t>((k % 16) | (((k / 2) % 16) << 4));
  float y[256];
  DequantizeRow(GgmlType::kQ4_K, &b, y, 256);
  EXPECT_EQ(y[0], 0.0f);      // sub-block 0, qs[0] low = 0: 1*0 - 0.5*0
  EXPECT_EQ(y[33], -0.5f);    // sub-block 1, qs[1] high = 0: 2*0 - 0.5*1
  EXPECT_EQ(y[101], 124.0f);  // sub-block 3, qs[37] high = 2: 63*2 - 0.5*4
  EXPECT_EQ(y[159], 238.5f);  // sub-block 4, qs[95] low = 15: 17*15 - 0.5*33
  EXPECT_EQ(y[255], 45.0f);   // sub-block 7, qs[127] high = 15: 5*15 - 0.5*60
  EXPECT_EQ(y[64 + 10], 10.0f * 3 - 31.5f);  // sub-block 2, qs[42] low = 10
  const int sc[8] = {1, 2, 3, 63, 17, 32, 48, 5};
  const int m[8] = {0, 1, 63, 4, 33, 16, 2, 60};
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32, byte = b.qs[32 * (e / 64) + e % 32];
    const int q = (j % 2 == 0) ? (byte & 15) : (byte >> 4);
    ASSERT_EQ(y[e], sc[j] * q - 0.5f * m[j]) << e;
  }
}

TEST(DequantizeTest, Q6_KHandBuilt) {
  BlockQ6_K b;
  for (int i = 0; i < 128; ++i) b.ql[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 64; ++i) b.qh[i] = static_cast<uint8_t>(i * 3);
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<int8_t>(g - 8);
  b.d = 0x3400;  // 0.25
  float y[256];
  DequantizeRow(GgmlType::kQ6_K, &b, y, 256);
  EXPECT_EQ(y[0], 64.0f);     // code 0 -> -32; scale -8: 0.25 * -8 * -32
  EXPECT_EQ(y[37], -31.5f);   // ql[37] low 5, qh[5]=15 bits 2-3 = 3: code 53 -> 21; scale -6
  EXPECT_EQ(y[200], 20.0f);   // ql[72] high 4, qh[40]=120 bits 4-5 = 3: code 52 -> 20; scale 4
  EXPECT_EQ(y[255], 12.25f);  // ql[127] high 7, qh[63]=189 bits 6-7 = 2: code 39 -> 7; scale 7
  EXPECT_EQ(y[64], 0.25f * -4 * ((0 | (0 << 4)) - 32));  // ql[0] high 0, qh[0] bits 4-5 = 0
}

TEST(DequantizeTest, F16AndBf16Rows) {
  const uint16_t h[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};
  float y[4];
  DequantizeRow(GgmlType::kF16, h, y, 4);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(y[3], 65504.0f);
  const uint16_t bf[2] = {0x3F80, 0xC0A0};
  DequantizeRow(GgmlType::kBF16, bf, y, 2);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -5.0f);
}

std::vector<float> RandomRow(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  // A few outliers, as real weights have.
  for (int64_t i = 0; i < n; i += 997) x[i] *= 6.0f;
  return x;
}

double RelativeRmse(GgmlType type, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(RowBytes(type, n));
  std::vector<float> y(n);
  QuantizeRow(type, x.data(), q.data(), n);
  DequantizeRow(type, q.data(), y.data(), n);
  double err = 0.0, sig = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    err += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    sig += double(x[i]) * x[i];
  }
  return std::sqrt(err / sig);
}

// Bounds sit ~15% above what these quantizers reach on Gaussian data with sparse 6x
// outliers (measured: f16 2.1e-4, bf16 1.7e-3, q8_0 5.8e-3, q4_0 0.093, q4_K 0.075,
// q6_K 0.019); a wrong scale or code layout is off by far more.
TEST(QuantizeTest, RoundTripErrorPerType) {
  const auto x = RandomRow(256 * 64, 11);
  struct Case {
    GgmlType type;
    double max_rel_rmse;
  };
  for (const Case& c : {Case{GgmlType::kF32, 0.0}, Case{GgmlType::kF16, 2.5e-4},
                        Case{GgmlType::kBF16, 2e-3}, Case{GgmlType::kQ8_0, 6.7e-3},
                        Case{GgmlType::kQ4_0, 0.11}, Case{GgmlType::kQ4_K, 0.086},
                        Case{GgmlType::kQ6_K, 0.022}}) {
    const double rmse = RelativeRmse(c.type, x);
    std::printf("%-5s relative rmse %.5f\n", std::string(TypeName(c.type)).c_str(), rmse);
    EXPECT_LE(rmse, c.max_rel_rmse) << TypeName(c.type);
  }
}

TEST(QuantizeTest, KQuantsBeatPlainRoundTrip) {
  // The scale + min search must pay off: Q4_K should be clearly better than Q4_0 (one
  // symmetric scale per 32) on data with a non-zero mean.
  auto x = RandomRow(256 * 16, 5);
  for (auto& v : x) v += 0.7f;
  EXPECT_LT(RelativeRmse(GgmlType::kQ4_K, x), 0.8 * RelativeRmse(GgmlType::kQ4_0, x));
}

TEST(QuantizeTest, ZeroRowsDecodeToZero) {
  const std::vector<float> zeros(512, 0.0f);
  for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    std::vector<uint8_t> q(RowBytes(t, 512));
    std::vector<float> y(512, 1.0f);
    QuantizeRow(t, zeros.data(), q.data(), 512);
    DequantizeRow(t, q.data(), y.data(), 512);
    for (float v : y) ASSERT_EQ(v, 0.0f) << TypeName(t);
  }
}

TEST(QuantizeTest, Q8_0IsAFixedPointOfItsOwnValues) {
  // Blocks whose largest |q| is 127 requantize to the same bytes.
  const auto x = RandomRow(32 * 8, 3);
  std::vector<uint8_t> q1(RowBytes(GgmlType::kQ8_0, 256)), q2(q1.size());
  std::vector<float> y(256);
  QuantizeRow(GgmlType::kQ8_0, x.data(), q1.data(), 256);
  DequantizeRow(GgmlType::kQ8_0, q1.data(), y.data(), 256);
  QuantizeRow(GgmlType::kQ8_0, y.data(), q2.data(), 256);
  EXPECT_EQ(q1, q2);
}

TEST(QuantizeTest, Q4_0PicksSignedMaxScale) {
  // The largest-magnitude element maps to code 0 (-8 * d), as llama.cpp's reference does.
  float x[32] = {};
  x[3] = -4.0f;
  x[20] = 1.0f;
  BlockQ4_0 b;
  QuantizeRow(GgmlType::kQ4_0, x, &b, 32);
  EXPECT_EQ(F16ToF32(b.d), 0.5f);
  EXPECT_EQ(b.qs[3] & 15, 0);
  EXPECT_EQ(b.qs[4] >> 4, 10);  // 1.0 / 0.5 + 8
  EXPECT_EQ(b.qs[0] & 15, 8);
}

}  // namespace
}  // namespace tierlm

namespace tierlm {
namespace {

// The AVX-512 activation conversion must produce the scalar code's bytes exactly.
TEST(ActivationFormatTest, Avx512ConversionIsBitIdentical) {
  if (!KernelPathSupported(KernelPath::kAvx512)) GTEST_SKIP();
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  const int64_t n_in = 768;
  std::vector<float> x(n_in);
  for (auto& v : x) v = dist(rng);
  for (int64_t i = 256; i < 288; ++i) x[i] = 0.0f;  // an all-zero block
  x[5] = 1e-30f;
  for (ActFormat f : {ActFormat::kQ8, ActFormat::kQ8Pair, ActFormat::kQ8U, ActFormat::kQ8K, ActFormat::kQ8KU,
                      ActFormat::kQ8KS}) {
    for (int64_t n : {n_in, int64_t{288}}) {
      if ((f == ActFormat::kQ8K || f == ActFormat::kQ8KU || f == ActFormat::kQ8KS) && n % 256 != 0) continue;
      const ActLayout layout = GetActLayout(f, n);
      std::vector<uint8_t> a(layout.row_bytes, 0xAB), b(layout.row_bytes, 0xCD);
      ForceKernelPath(KernelPath::kScalar);
      ConvertActivationRow(f, x.data(), n, a.data());
      ForceKernelPath(KernelPath::kAvx512);
      ConvertActivationRow(f, x.data(), n, b.data());
      ForceKernelPath(std::nullopt);
      for (int64_t i = 0; i < layout.row_bytes; ++i)
        ASSERT_EQ(a[i], b[i]) << "format " << static_cast<int>(f) << " n=" << n << " byte " << i;
    }
  }
}

}  // namespace
}  // namespace tierlm
