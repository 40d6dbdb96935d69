// tierlm's low-bit type kLQ2: what its bytes mean, how well the quantizer fits, and that
// it can never come from a GGUF file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "cli_runner.h"
#include "format/byte_source.h"
#include "format/gguf_file.h"
#include "gguf_builder.h"
#include "kernels/block_types.h"
#include "kernels/quant.h"
#include "test_paths.h"

namespace tierlm {
namespace {

TEST(LowbitTypeTest, InternalTypeIsNotAGgufType) {
  EXPECT_EQ(TypeName(GgmlType::kLQ2), "lq2");
  EXPECT_EQ(TypeTraits(GgmlType::kLQ2).block_size, 256);
  EXPECT_EQ(TypeTraits(GgmlType::kLQ2).type_size, 84);
  EXPECT_TRUE(TypeTraits(GgmlType::kLQ2).supported);
  EXPECT_EQ(RowBytes(GgmlType::kLQ2, 512), 168);
  EXPECT_FALSE(GetTypeTraits(static_cast<uint32_t>(GgmlType::kLQ2)).has_value());
  EXPECT_FALSE(ParseTypeName("lq2").has_value());

  // A GGUF tensor claiming the internal id is rejected like any unknown id.
  testing::GgufBytes g;
  g.Header(3, 1, 0).Tensor("w", {256}, static_cast<uint32_t>(GgmlType::kLQ2), 0).AlignTo(32).Zeros(128);
  MemoryByteSource src(g.bytes.data(), g.bytes.size());
  auto f = gguf::GgufFile::Parse(src, "test.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("unknown ggml type id 65537"), std::string::npos) << f.status().ToString();
}

TEST(LowbitTypeTest, DequantizeHandBuilt) {
  BlockLQ2 b;
  std::memset(&b, 0, sizeof b);
  b.d = F32ToF16(0.5f);
  b.dmin = F32ToF16(0.25f);
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<uint8_t>((g % 16) | ((15 - g) << 4));
  // Element 16 g + 4 k + j has code (g + k + j) % 4 at byte 4 g + j, bits 2 k.
  for (int g = 0; g < 16; ++g)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 4; ++j) b.qs[4 * g + j] |= static_cast<uint8_t>(((g + k + j) % 4) << (2 * k));
  float y[256];
  DequantizeRow(GgmlType::kLQ2, &b, y, 256);
  for (int g = 0; g < 16; ++g)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 4; ++j) {
        const float want = 0.5f * g * ((g + k + j) % 4) - 0.25f * (15 - g);
        ASSERT_EQ(y[16 * g + 4 * k + j], want) << g << " " << k << " " << j;
      }
}

std::vector<float> NormalRow(int64_t n, uint32_t seed, float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  return x;
}

double RmsError(GgmlType type, const std::vector<float>& x, double* sigma) {
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
  if (sigma) *sigma = std::sqrt(sig / n);
  return std::sqrt(err / n);
}

// Naive encoding of the same layout: per group scale = (max - min) / 3, offset = min.
double NaiveRmse(const std::vector<float>& x) {
  double err = 0.0;
  for (size_t g = 0; g < x.size(); g += 16) {
    float mn = x[g], mx = x[g];
    for (int l = 0; l < 16; ++l) mn = std::min(mn, x[g + l]), mx = std::max(mx, x[g + l]);
    const float d = (mx - mn) / 3.0f;
    for (int l = 0; l < 16; ++l) {
      const float q = std::clamp(std::nearbyint((x[g + l] - mn) / d), 0.0f, 3.0f);
      err += std::pow(double(d * q + mn) - x[g + l], 2);
    }
  }
  return std::sqrt(err / x.size());
}

// Measured on N(0, 1): 0.262 (q2_K-like layout with this search; naive min/max 0.33);
// a wrong code order or scale rounding is off by far more.
TEST(LowbitTypeTest, QuantizationErrorBound) {
  const auto x = NormalRow(256 * 256, 7);
  double sigma = 0.0;
  const double rmse = RmsError(GgmlType::kLQ2, x, &sigma);
  std::printf("lq2 rmse / sigma %.4f (naive min/max %.4f)\n", rmse / sigma, NaiveRmse(x) / sigma);
  EXPECT_LE(rmse / sigma, 0.28);
  EXPECT_LT(rmse, 0.85 * NaiveRmse(x));
  // Scale invariance: small and large weights alike (f16 d and dmin keep the range).
  for (float scale : {1e-3f, 30.0f}) {
    std::vector<float> xs = x;
    for (auto& v : xs) v *= scale;
    EXPECT_LE(RmsError(GgmlType::kLQ2, xs, &sigma) / sigma, 0.28) << scale;
  }
  // Shifted data: the min absorbs the shift.
  const auto shifted = NormalRow(256 * 64, 8, -0.5f);
  EXPECT_LE(RmsError(GgmlType::kLQ2, shifted, nullptr), 0.28);
}

TEST(LowbitTypeTest, ZeroAndConstantRows) {
  std::vector<float> x(512, 0.0f), y(512, 1.0f);
  std::vector<uint8_t> q(RowBytes(GgmlType::kLQ2, 512));
  QuantizeRow(GgmlType::kLQ2, x.data(), q.data(), 512);
  DequantizeRow(GgmlType::kLQ2, q.data(), y.data(), 512);
  for (float v : y) ASSERT_EQ(v, 0.0f);
  // A negative constant is exactly an offset.
  std::fill(x.begin(), x.end(), -0.75f);
  QuantizeRow(GgmlType::kLQ2, x.data(), q.data(), 512);
  DequantizeRow(GgmlType::kLQ2, q.data(), y.data(), 512);
  for (float v : y) ASSERT_NEAR(v, -0.75f, 1e-3f);
}

TEST(LowbitTypeTest, RoundTripOfItsOwnValuesIsStable) {
  // Requantizing decoded values must not drift: error stays within that of the first pass
  // (the search can find the same or an equally good encoding).
  const auto x = NormalRow(256 * 32, 9);
  std::vector<uint8_t> q1(RowBytes(GgmlType::kLQ2, x.size())), q2(q1.size());
  std::vector<float> y1(x.size()), y2(x.size());
  QuantizeRow(GgmlType::kLQ2, x.data(), q1.data(), x.size());
  DequantizeRow(GgmlType::kLQ2, q1.data(), y1.data(), x.size());
  QuantizeRow(GgmlType::kLQ2, y1.data(), q2.data(), x.size());
  DequantizeRow(GgmlType::kLQ2, q2.data(), y2.data(), x.size());
  double e1 = 0.0, e12 = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    e1 += std::pow(double(x[i]) - y1[i], 2);
    e12 += std::pow(double(y1[i]) - y2[i], 2);
  }
  EXPECT_LT(e12, 0.05 * e1);
}

// The PyTorch reference's numpy dequantizer (tests/reference/dequant.py) reads low-bit
// experts exactly as DequantizeRow does.
TEST(LowbitTypeTest, PythonReferenceDequantMatches) {
  const auto x = NormalRow(256 * 12, 21);
  std::vector<uint8_t> q(RowBytes(GgmlType::kLQ2, x.size()));
  std::vector<float> y(x.size());
  QuantizeRow(GgmlType::kLQ2, x.data(), q.data(), x.size());
  DequantizeRow(GgmlType::kLQ2, q.data(), y.data(), x.size());
  const auto dir = testing::ScratchDir("lowbit-py");
  std::ofstream(dir / "w.bin", std::ios::binary).write(reinterpret_cast<const char*>(q.data()), q.size());
  std::ofstream(dir / "y.bin", std::ios::binary).write(reinterpret_cast<const char*>(y.data()), y.size() * 4);
  const std::string script =
      "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); from dequant import dequantize, LQ2; "
      "w = open(sys.argv[2] + '/w.bin', 'rb').read(); want = np.fromfile(sys.argv[2] + '/y.bin', dtype='<f4'); "
      "got = dequantize(LQ2, w, (768, 4)).reshape(-1); "
      "print('max abs diff', np.abs(got - want).max()); sys.exit(0 if np.array_equal(got, want) else 1)";
  const auto r = testing::RunShell("/usr/bin/python3 -c " + testing::Quote(script) + " " +
                                   testing::Quote((testing::SourceDir() / "tests/reference").string()) + " " +
                                   testing::Quote(dir.string()));
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace tierlm
