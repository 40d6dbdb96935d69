#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "test_printers.h"

namespace tierlm {
namespace {

struct Case {
  int64_t n_head, n_head_kv, head_dim, n_tok, pos0;
};

// out[t][h] in double, straight from the definition.
std::vector<double> Reference(const AttentionShape& s, const std::vector<float>& q, int64_t n_tok, int64_t pos0,
                              const std::vector<float>& k, const std::vector<float>& v) {
  const int64_t hd = s.head_dim, qs = s.n_head * hd, kvs = s.n_head_kv * hd, g = s.n_head / s.n_head_kv;
  std::vector<double> out(static_cast<size_t>(n_tok * qs));
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t h = 0; h < s.n_head; ++h) {
      const int64_t n_keys = pos0 + t + 1, kvh = h / g;
      std::vector<double> sc(static_cast<size_t>(n_keys));
      double mx = -1e300;
      for (int64_t p = 0; p < n_keys; ++p) {
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += double(q[t * qs + h * hd + i]) * k[p * kvs + kvh * hd + i];
        sc[p] = d * s.scale;
        mx = std::max(mx, sc[p]);
      }
      double sum = 0;
      for (auto& x : sc) sum += (x = std::exp(x - mx));
      for (int64_t p = 0; p < n_keys; ++p)
        for (int64_t i = 0; i < hd; ++i) out[t * qs + h * hd + i] += sc[p] / sum * v[p * kvs + kvh * hd + i];
    }
  }
  return out;
}

class AttentionPathTest : public ::testing::TestWithParam<KernelPath> {};

TEST_P(AttentionPathTest, MatchesDoubleReference) {
  if (!KernelPathSupported(GetParam())) GTEST_SKIP();
  ForceKernelPath(GetParam());
  ThreadPool pool2(2), pool3(3);
  const Case cases[] = {{4, 2, 64, 1, 0},   {4, 2, 64, 37, 0},  {8, 2, 64, 5, 40},  {2, 1, 128, 19, 13},
                        {3, 3, 48, 9, 7},   {4, 1, 32, 33, 0},  {2, 2, 64, 1, 100}, {4, 4, 96, 17, 16}};
  for (const Case& c : cases) {
    SCOPED_TRACE("heads=" + std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " hd=" +
                 std::to_string(c.head_dim) + " n_tok=" + std::to_string(c.n_tok) + " pos0=" + std::to_string(c.pos0));
    const AttentionShape s{c.n_head, c.n_head_kv, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.5f);
    const int64_t ctx = c.pos0 + c.n_tok;
    std::vector<float> q(c.n_tok * c.n_head * c.head_dim), k(ctx * c.n_head_kv * c.head_dim),
        v(ctx * c.n_head_kv * c.head_dim);
    for (auto* vec : {&q, &k, &v})
      for (auto& x : *vec) x = dist(rng);
    const std::vector<double> ref = Reference(s, q, c.n_tok, c.pos0, k, v);
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
      std::vector<float> out(q.size(), -7.0f);
      CausalAttention(s, q.data(), c.n_tok, c.pos0, k.data(), v.data(), out.data(), pool);
      for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5 * (1.0 + std::fabs(ref[i]))) << "i=" << i;
    }
  }
  ForceKernelPath(std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Paths, AttentionPathTest,
                         ::testing::Values(KernelPath::kScalar, KernelPath::kAvx2, KernelPath::kAvx512),
                         [](const auto& info) { return std::string(KernelPathName(info.param)); });

}  // namespace
}  // namespace tierlm
