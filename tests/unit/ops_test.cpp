#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace tierlm {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(OpsTest, RmsNormMatchesDouble) {
  for (int64_t n : {1, 7, 64, 2048, 2051}) {
    const auto x = Random(n, 1, 3.0f), w = Random(n, 2);
    std::vector<float> out(n);
    RmsNorm(x.data(), w.data(), n, 1e-5f, out.data());
    double ss = 0.0;
    for (float v : x) ss += double(v) * v;
    const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(out[i], x[i] * inv * w[i], 1e-5 * std::fabs(x[i] * inv * w[i]) + 1e-6);
  }
}

TEST(OpsTest, RmsNormUsesEps) {
  const float x[2] = {0.0f, 0.0f}, w[2] = {1.0f, 1.0f};
  float out[2] = {1.0f, 1.0f};
  RmsNorm(x, w, 2, 1e-6f, out);
  EXPECT_EQ(out[0], 0.0f);
  const float x1[1] = {3.0f}, w1[1] = {2.0f};
  RmsNorm(x1, w1, 1, 7.0f, out);  // 3 / sqrt(9 + 7) * 2
  EXPECT_FLOAT_EQ(out[0], 1.5f);
}

TEST(OpsTest, SoftmaxMatchesDoubleAndIsStable) {
  for (int64_t n : {1, 5, 100, 4099}) {
    auto x = Random(n, 3, 4.0f);
    x[0] = 1000.0f;  // large values must not overflow
    std::vector<double> ref(x.begin(), x.end());
    double max = ref[0], sum = 0.0;
    for (double v : ref) max = std::max(max, v);
    for (double& v : ref) sum += (v = std::exp(v - max));
    Softmax(x.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(x[i], ref[i] / sum, 1e-6) << i;
  }
  float y[3] = {-INFINITY, 0.0f, 0.0f};  // masked entries get probability 0
  Softmax(y, 3);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_FLOAT_EQ(y[1], 0.5f);
}

TEST(OpsTest, SwiGluMatchesDouble) {
  const int64_t n = 1001;
  auto g = Random(n, 4, 5.0f), u = Random(n, 5);
  g[0] = -100.0f;  // silu -> -0
  g[1] = 100.0f;   // silu -> x
  std::vector<float> out(n);
  SwiGlu(g.data(), u.data(), out.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double ref = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
    ASSERT_NEAR(out[i], ref, 1e-6 * std::fabs(ref) + 1e-7) << i;
  }
  SwiGlu(g.data(), u.data(), g.data(), n);  // in place
  EXPECT_EQ(g[5], out[5]);
}

TEST(OpsTest, AddInPlace) {
  auto a = Random(37, 6), b = Random(37, 7);
  const auto a0 = a;
  Add(a.data(), b.data(), a.data(), 37);
  for (int i = 0; i < 37; ++i) ASSERT_EQ(a[i], a0[i] + b[i]);
}

// Reference RoPE in double: theta_k = pos * freq_scale * base^(-2k / n_rot).
void RopeRef(std::vector<double>& x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos,
             double freq_scale, double base, bool neox) {
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t k = 0; k < n_rot / 2; ++k) {
      const double theta = pos * freq_scale * std::pow(base, -2.0 * k / n_rot);
      const int64_t i0 = h * head_dim + (neox ? k : 2 * k);
      const int64_t i1 = i0 + (neox ? n_rot / 2 : 1);
      const double a = x[i0], b = x[i1];
      x[i0] = a * std::cos(theta) - b * std::sin(theta);
      x[i1] = a * std::sin(theta) + b * std::cos(theta);
    }
  }
}

TEST(OpsTest, RopeBothStylesMatchDouble) {
  struct Case {
    int64_t n_head, head_dim, n_rot, pos;
    float scale, base;
  };
  for (bool neox : {false, true}) {
    for (const Case& c : {Case{4, 64, 64, 0, 1.0f, 10000.0f}, Case{3, 64, 64, 17, 1.0f, 10000.0f},
                          Case{2, 128, 128, 511, 0.25f, 500000.0f}, Case{2, 80, 32, 9, 1.0f, 10000.0f}}) {
      auto x = Random(c.n_head * c.head_dim, 8);
      std::vector<double> ref(x.begin(), x.end());
      RopeRef(ref, c.n_head, c.head_dim, c.n_rot, c.pos, c.scale, c.base, neox);
      std::vector<float> inv_freq(c.n_rot / 2);
      RopeInvFreq(c.base, c.n_rot, inv_freq.data());
      Rope(x.data(), c.n_head, c.head_dim, c.n_rot, c.pos, c.scale, inv_freq.data(), neox);
      // float angles: error grows with pos * freq (about pos * 1e-7 radians).
      const double tol = 2e-6 + 3e-7 * c.pos;
      for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], ref[i], tol) << "neox=" << neox << " i=" << i;
    }
  }
}

TEST(OpsTest, RopeStylesPairDifferentElements) {
  // One head of 4 with only element 1 set, rotated by 90 degrees at pair 0:
  // normal pairs (0, 1): element 1 moves to element 0; neox pairs (0, 2), (1, 3): to 3.
  const float inv_freq[2] = {1.0f, 1.0f};
  const float quarter = static_cast<float>(M_PI / 2);
  float normal[4] = {0, 1, 0, 0}, neox[4] = {0, 1, 0, 0};
  Rope(normal, 1, 4, 4, 1, quarter, inv_freq, false);
  Rope(neox, 1, 4, 4, 1, quarter, inv_freq, true);
  EXPECT_NEAR(normal[0], -1.0f, 1e-6);
  EXPECT_NEAR(normal[1], 0.0f, 1e-6);
  EXPECT_NEAR(neox[1], 0.0f, 1e-6);
  EXPECT_NEAR(neox[3], 1.0f, 1e-6);
}

}  // namespace
}  // namespace tierlm
