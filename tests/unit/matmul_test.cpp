#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "test_printers.h"
#include "kernels/quant.h"

namespace tierlm {
namespace {

constexpr GgmlType kTypes[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16,
                               GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_K,
                               GgmlType::kQ6_K, GgmlType::kLQ2};

// Types whose blocks are 256 elements.
bool Block256(GgmlType t) { return t == GgmlType::kQ4_K || t == GgmlType::kQ6_K || t == GgmlType::kLQ2; }

std::vector<KernelPath> SupportedPaths() {
  std::vector<KernelPath> paths;
  for (KernelPath p : {KernelPath::kScalar, KernelPath::kAvx2, KernelPath::kAvx512, KernelPath::kAmx})
    if (KernelPathSupported(p)) paths.push_back(p);
  return paths;
}

class ForcedPath {
 public:
  explicit ForcedPath(KernelPath p) { ForceKernelPath(p); }
  ~ForcedPath() { ForceKernelPath(std::nullopt); }
};

struct Problem {
  GgmlType type;
  int64_t n_in, n_out, n_tok, x_stride, y_stride;
  std::vector<uint8_t> w;      // quantized weights
  std::vector<double> w_deq;   // [n_out][n_in], what the weight bytes encode
  std::vector<float> x;        // [n_tok][x_stride]
};

Problem MakeProblem(GgmlType type, int64_t n_in, int64_t n_out, int64_t n_tok, uint32_t seed) {
  Problem p{type, n_in, n_out, n_tok, n_in + 5, n_out + 3, {}, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t row_bytes = RowBytes(type, n_in);
  p.w.resize(row_bytes * n_out);
  p.w_deq.resize(n_in * n_out);
  std::vector<float> row(n_in);
  for (int64_t o = 0; o < n_out; ++o) {
    for (auto& v : row) v = dist(rng) * 0.05f + ((o % 3 == 0) ? 0.02f : 0.0f);
    QuantizeRow(type, row.data(), p.w.data() + o * row_bytes, n_in);
    DequantizeRow(type, p.w.data() + o * row_bytes, row.data(), n_in);
    std::copy(row.begin(), row.end(), p.w_deq.begin() + o * n_in);
  }
  p.x.assign(n_tok * p.x_stride, 1e30f);  // padding must never be read into results
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t i = 0; i < n_in; ++i) p.x[t * p.x_stride + i] = dist(rng) * (1.0f + (i % 7));
  return p;
}

// Worst-case error from rounding activations to the path's form, plus f32 accumulation.
double Tolerance(const Problem& p, int64_t t, int64_t o) {
  const float* x = p.x.data() + t * p.x_stride;
  const double* w = p.w_deq.data() + o * p.n_in;
  const bool q8 = p.type == GgmlType::kQ8_0 || p.type == GgmlType::kQ4_0 || p.type == GgmlType::kLQ2;
  const bool q8k = p.type == GgmlType::kQ4_K || p.type == GgmlType::kQ6_K;
  const int64_t block = q8 ? 32 : q8k ? 256 : 1;
  double tol = 0.0, mag = 0.0;
  for (int64_t b = 0; b < p.n_in; b += block) {
    double amax = 0.0;
    for (int64_t i = b; i < b + block; ++i) amax = std::max(amax, std::fabs(double(x[i])));
    for (int64_t i = b; i < b + block; ++i) {
      const double a = std::fabs(w[i]);
      mag += a * std::fabs(x[i]);
      if (q8 || q8k) tol += a * amax / 254.0;                            // half a step
      if (p.type == GgmlType::kBF16) tol += a * std::fabs(x[i]) / 256.0;  // bf16 rounding
    }
  }
  return tol + 2e-5 * mag + 1e-6;
}

std::vector<float> RunMatmul(const Problem& p, ThreadPool* pool) {
  std::vector<float> y(p.n_tok * p.y_stride, -7.0f);
  WeightMatrix w{p.type, p.w.data(), p.n_in, p.n_out};
  Matmul(w, p.x.data(), p.x_stride, p.n_tok, y.data(), p.y_stride, pool);
  return y;
}

struct Shape {
  int64_t n_in, n_out, n_tok;
};

void CheckAgainstReference(GgmlType type, const Shape& s, ThreadPool* pool) {
  const Problem p = MakeProblem(type, s.n_in, s.n_out, s.n_tok, 42 + s.n_out * 7 + s.n_tok);
  const std::vector<float> y = RunMatmul(p, pool);
  for (int64_t t = 0; t < p.n_tok; ++t) {
    for (int64_t o = 0; o < p.y_stride; ++o) {
      const float got = y[t * p.y_stride + o];
      if (o >= p.n_out) {
        ASSERT_EQ(got, -7.0f) << "wrote past n_out at t=" << t << " o=" << o;
        continue;
      }
      double ref = 0.0;
      for (int64_t i = 0; i < p.n_in; ++i)
        ref += p.w_deq[o * p.n_in + i] * p.x[t * p.x_stride + i];
      ASSERT_NEAR(got, ref, Tolerance(p, t, o)) << "t=" << t << " o=" << o;
    }
  }
}

std::vector<Shape> ShapesFor(GgmlType type) {
  const bool k = Block256(type);
  const int64_t a = k ? 256 : 96, b = k ? 768 : 288;  // 3 and 9 blocks of 32 when not k
  return {{a, 1, 1},  {a, 5, 3},   {b, 37, 7},  {b, 67, 1},   {a, 19, 64},
          {b, 40, 70}, {512, 16, 8}, {b, 131, 2}, {1024, 33, 5}};
}

class MatmulPathTest : public ::testing::TestWithParam<KernelPath> {};

TEST_P(MatmulPathTest, MatchesDoubleReferenceForEveryType) {
  ForcedPath forced(GetParam());
  ThreadPool pool2(2);
  for (GgmlType type : kTypes) {
    SCOPED_TRACE(std::string(TypeName(type)));
    for (const Shape& s : ShapesFor(type)) {
      SCOPED_TRACE("n_in=" + std::to_string(s.n_in) + " n_out=" + std::to_string(s.n_out) +
                   " n_tok=" + std::to_string(s.n_tok));
      CheckAgainstReference(type, s, nullptr);
      CheckAgainstReference(type, s, &pool2);
      if (HasFatalFailure()) return;
    }
  }
}

// Paths share the activation rounding (except bf16 activations on AVX-512), so they must
// agree with the scalar kernels to f32 accumulation-order error, far tighter than above.
// The SIMD paths only: each is compared with the scalar one.
class MatmulSimdPathTest : public MatmulPathTest {};
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MatmulSimdPathTest);

TEST_P(MatmulSimdPathTest, AgreesWithScalarPath) {
  ThreadPool pool2(2);
  for (GgmlType type : kTypes) {
    SCOPED_TRACE(std::string(TypeName(type)));
    const Problem p = MakeProblem(type, type == GgmlType::kQ4_0 ? 2080 : 2048, 45, 9, 9);
    std::vector<float> ref, got;
    {
      ForcedPath forced(KernelPath::kScalar);
      ref = RunMatmul(p, nullptr);
    }
    {
      ForcedPath forced(GetParam());
      got = RunMatmul(p, &pool2);
    }
    const double rel = type == GgmlType::kBF16 ? 1e-2 : 2e-5;
    for (int64_t t = 0; t < p.n_tok; ++t) {
      for (int64_t o = 0; o < p.n_out; ++o) {
        double mag = 0.0;
        for (int64_t i = 0; i < p.n_in; ++i)
          mag += std::fabs(p.w_deq[o * p.n_in + i] * p.x[t * p.x_stride + i]);
        ASSERT_NEAR(got[t * p.y_stride + o], ref[t * p.y_stride + o], rel * mag)
            << "t=" << t << " o=" << o;
      }
    }
  }
}

// Batches large enough for every path's batched (panel) kernels, with partial panels of
// rows and tokens, odd block counts, and an odd n_in for the float types.
TEST_P(MatmulPathTest, BatchedShapes) {
  ForcedPath forced(GetParam());
  ThreadPool pool2(2);
  for (GgmlType type : kTypes) {
    SCOPED_TRACE(std::string(TypeName(type)));
    const bool k = Block256(type);
    const bool flt = type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16;
    const int64_t n_in = k ? 512 : flt ? 97 : 160;
    for (const Shape& s : {Shape{n_in, 49, 40}, Shape{n_in, 32, 33}, Shape{n_in, 17, 13}}) {
      SCOPED_TRACE("n_out=" + std::to_string(s.n_out) + " n_tok=" + std::to_string(s.n_tok));
      CheckAgainstReference(type, s, &pool2);
      if (HasFatalFailure()) return;
    }
  }
}

// MatmulBatch: one parallel pass over several products, sharing conversions of the same
// input, must give exactly what separate Matmul calls give (which the tests above check
// against the double-precision reference). Includes a job long enough for the prefill
// kernels, jobs sharing an input, and empty jobs.
TEST_P(MatmulPathTest, BatchEqualsSeparateMatmuls) {
  ForcedPath forced(GetParam());
  ThreadPool pool2(2);
  for (GgmlType type : kTypes) {
    SCOPED_TRACE(std::string(TypeName(type)));
    const bool k = type == GgmlType::kQ4_K || type == GgmlType::kQ6_K;
    const int64_t n_in = k ? 512 : 160;
    std::vector<Problem> problems;
    problems.push_back(MakeProblem(type, n_in, 37, 1, 1));
    problems.push_back(MakeProblem(type, n_in, 200, 1, 2));
    problems.push_back(MakeProblem(type, n_in, 64, 3, 3));
    problems.push_back(MakeProblem(type, n_in, 33, 40, 4));
    problems.push_back(MakeProblem(type, n_in, 0, 1, 5));
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
      std::vector<MatmulJob> jobs;
      std::vector<std::vector<float>> got(problems.size() + 1);
      for (size_t i = 0; i < problems.size(); ++i) {
        const Problem& p = problems[i];
        got[i].assign(p.n_tok * p.y_stride, -7.0f);
        jobs.push_back({WeightMatrix{p.type, p.w.data(), p.n_in, p.n_out}, p.x.data(), p.x_stride, p.n_tok,
                        got[i].data(), p.y_stride});
      }
      // A second product of problem 1's input (as gate and up share theirs), other weights.
      const Problem& q = problems[2];
      got.back().assign(problems[1].n_tok * q.n_out, -7.0f);
      jobs.push_back({WeightMatrix{q.type, q.w.data(), q.n_in, q.n_out}, problems[1].x.data(), problems[1].x_stride,
                      problems[1].n_tok, got.back().data(), q.n_out});
      MatmulBatch(jobs, pool);
      for (size_t i = 0; i < problems.size(); ++i)
        EXPECT_EQ(got[i], RunMatmul(problems[i], pool)) << "job " << i;
      std::vector<float> want(problems[1].n_tok * q.n_out, -7.0f);
      Matmul(WeightMatrix{q.type, q.w.data(), q.n_in, q.n_out}, problems[1].x.data(), problems[1].x_stride,
             problems[1].n_tok, want.data(), q.n_out, pool);
      EXPECT_EQ(got.back(), want) << "shared input";
    }
  }
}

// Enough jobs that MatmulBatch hands each out whole (MoE decode: 2 x top-k experts).
TEST_P(MatmulPathTest, BatchOfManyJobsEqualsSeparateMatmuls) {
  ForcedPath forced(GetParam());
  ThreadPool pool2(2);
  for (GgmlType type : {GgmlType::kQ4_0, GgmlType::kQ8_0, GgmlType::kQ6_K, GgmlType::kF32}) {
    SCOPED_TRACE(std::string(TypeName(type)));
    const bool k = type == GgmlType::kQ6_K;
    std::vector<Problem> problems;
    for (uint32_t i = 0; i < 12; ++i) problems.push_back(MakeProblem(type, k ? 512 : 160, 40 + 9 * i, 1, 100 + i));
    std::vector<std::vector<float>> got(problems.size());
    std::vector<MatmulJob> jobs;
    for (size_t i = 0; i < problems.size(); ++i) {
      const Problem& p = problems[i];
      got[i].assign(p.y_stride, -7.0f);
      // Even jobs share problem 0's input, as an expert's gate and up do.
      const Problem& in = i % 2 == 0 ? problems[0] : p;
      jobs.push_back({WeightMatrix{p.type, p.w.data(), p.n_in, p.n_out}, in.x.data(), in.x_stride, 1, got[i].data(),
                      p.y_stride});
    }
    MatmulBatch(jobs, &pool2);
    for (size_t i = 0; i < problems.size(); ++i) {
      const Problem& p = problems[i];
      const Problem& in = i % 2 == 0 ? problems[0] : p;
      std::vector<float> want(p.y_stride, -7.0f);
      Matmul(WeightMatrix{p.type, p.w.data(), p.n_in, p.n_out}, in.x.data(), in.x_stride, 1, want.data(), p.y_stride,
             &pool2);
      EXPECT_EQ(got[i], want) << "job " << i;
    }
  }
}

// Batch invariance, kernel level: for every weight type and batch size, each token's output
// row must equal, bit for bit, what the same token gives alone (n_tok = 1), through Matmul
// and MatmulBatch, with no pool and pools of 1..3 threads. Batch sizes cross every kernel's
// switch points (register tiles of 4, panels of 6 or 8 tokens, prefill from 8 or 32 tokens,
// 64-token cache blocks); n_out is not a multiple of any row tile; n_in has an odd block count
// (and is odd for the float types).
// Returns whether they were.
bool ExpectRowsBitIdentical(const std::vector<float>& got, const std::vector<float>& alone, const Problem& p,
                            const char* what) {
  for (int64_t t = 0; t < p.n_tok; ++t) {
    const float* g = got.data() + t * p.y_stride;
    const float* a = alone.data() + t * p.n_out;
    if (std::memcmp(g, a, static_cast<size_t>(p.n_out) * sizeof(float)) != 0) {
      int64_t o = 0;
      while (std::memcmp(g + o, a + o, sizeof(float)) == 0) ++o;
      ADD_FAILURE() << what << ": n_tok=" << p.n_tok << " token " << t << " row " << o << " is " << g[o]
                    << " in the batch but " << a[o] << " alone";
      return false;
    }
  }
  return true;
}

TEST_P(MatmulPathTest, EveryTokenOfABatchEqualsItselfAlone) {
  ForcedPath forced(GetParam());
  ThreadPool pool1(1), pool2(2), pool3(3);
  const int64_t kToks[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 130, 512};
  // Checks one type; returns at its first failure (so one report per type, every type run).
  auto check = [&](GgmlType type) {
    SCOPED_TRACE(std::string(TypeName(type)));
    const bool k = Block256(type);
    const bool flt = type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16;
    const int64_t n_in = k ? 768 : flt ? 161 : 224;  // 3 / 7 blocks; odd for floats
    const int64_t n_out = 83;
    const Problem p = MakeProblem(type, n_in, n_out, 512, 77);
    const WeightMatrix w{p.type, p.w.data(), p.n_in, p.n_out};
    // Each token alone, no pool.
    std::vector<float> alone(p.n_tok * n_out);
    for (int64_t t = 0; t < p.n_tok; ++t)
      Matmul(w, p.x.data() + t * p.x_stride, p.x_stride, 1, alone.data() + t * n_out, n_out, nullptr);
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool1, &pool2, &pool3}) {
      for (int64_t n_tok : kToks) {
        // Tokens [first, first + n_tok) of the 512, so batches do not all start at token 0.
        const int64_t first = (n_tok * 37) % (p.n_tok - n_tok + 1);
        Problem view{p.type, p.n_in, p.n_out, n_tok, p.x_stride, p.y_stride, {}, {}, {}};
        const float* x = p.x.data() + first * p.x_stride;
        const std::vector<float> want(alone.begin() + first * n_out, alone.begin() + (first + n_tok) * n_out);
        std::vector<float> y(n_tok * p.y_stride, -7.0f);
        Matmul(w, x, p.x_stride, n_tok, y.data(), p.y_stride, pool);
        bool ok = ExpectRowsBitIdentical(y, want, view, "Matmul");
        // MatmulBatch: the same product as one job beside a single-token job and a second
        // product of the same input.
        std::vector<float> y2(n_tok * p.y_stride, -7.0f), y3(p.y_stride, -7.0f), y4(n_tok * p.y_stride, -7.0f);
        const MatmulJob jobs[] = {{w, x, p.x_stride, n_tok, y2.data(), p.y_stride},
                                  {w, p.x.data(), p.x_stride, 1, y3.data(), p.y_stride},
                                  {w, x, p.x_stride, n_tok, y4.data(), p.y_stride}};
        MatmulBatch(jobs, pool);
        ok &= ExpectRowsBitIdentical(y2, want, view, "MatmulBatch");
        ok &= ExpectRowsBitIdentical(y4, want, view, "MatmulBatch, shared input");
        Problem one = view;
        one.n_tok = 1;
        ok &= ExpectRowsBitIdentical(y3, std::vector<float>(alone.begin(), alone.begin() + n_out), one,
                                     "MatmulBatch, single-token job");
        if (!ok) return;
      }
    }
  };
  for (GgmlType type : kTypes) check(type);
}

INSTANTIATE_TEST_SUITE_P(Paths, MatmulPathTest, ::testing::ValuesIn(SupportedPaths()),
                         [](const auto& info) { return std::string(KernelPathName(info.param)); });

std::vector<KernelPath> SimdPaths() {
  std::vector<KernelPath> paths = SupportedPaths();
  paths.erase(std::remove(paths.begin(), paths.end(), KernelPath::kScalar), paths.end());
  return paths;
}
INSTANTIATE_TEST_SUITE_P(Paths, MatmulSimdPathTest, ::testing::ValuesIn(SimdPaths()),
                         [](const auto& info) { return std::string(KernelPathName(info.param)); });

// Not a check: the timing loop docs/BENCHMARKS.md quotes (batch invariance section). Run with
//   tierlm_tests --gtest_also_run_disabled_tests --gtest_filter='*MatmulSpeed*'
// Eight 2048 x 5632 matrices per type (the TinyLlama FFN shape, together larger than L3) are
// multiplied in turn on the calling thread alone; thread CPU time per call, so that other
// processes on a shared machine perturb the figures less than wall time would.
TEST(MatmulSpeed, DISABLED_ThreadCpuTimePerCall) {
  const int64_t n_in = 2048, n_out = 5632, n_mat = 8;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(512 * n_in), y(512 * n_out), row(n_in);
  for (float& v : x) v = dist(rng);
  for (GgmlType type : {GgmlType::kQ4_0, GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kBF16}) {
    const int64_t rb = RowBytes(type, n_in);
    std::vector<std::vector<uint8_t>> w(n_mat, std::vector<uint8_t>(rb * n_out));
    for (auto& m : w)
      for (int64_t o = 0; o < n_out; ++o) {
        if (o < 64) for (float& v : row) v = dist(rng);  // 64 distinct rows are enough
        QuantizeRow(type, row.data(), m.data() + o * rb, n_in);
      }
    for (int64_t n_tok : {1, 2, 4, 8, 16, 32, 64, 128, 512}) {
      const int reps = n_tok >= 256 ? 1 : n_tok >= 32 ? 2 : 8;
      std::vector<double> ms;
      for (int rep = 0; rep < 5; ++rep) {
        timespec c0, c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        for (int r = 0; r < reps; ++r)
          for (const auto& m : w)
            Matmul(WeightMatrix{type, m.data(), n_in, n_out}, x.data(), n_in, n_tok, y.data(), n_out, nullptr);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        ms.push_back(((c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6) / (reps * n_mat));
      }
      std::sort(ms.begin(), ms.end());
      std::printf("%-5s n_tok %3lld: %7.3f ms per call (min %.3f, max %.3f), %6.1f tokens/ms\n",
                  std::string(TypeName(type)).c_str(), static_cast<long long>(n_tok), ms[2], ms[0], ms[4],
                  n_tok / ms[2]);
    }
  }
}

// The AMX path computes every product in the AVX-512 path's f32 order (only the integer dots
// move to tiles), so the two must agree bit for bit, for every type, batch size (partial
// tiles of 16 tokens and of 32 rows included), thread count and a model-sized n_in. On a CPU
// without AMX the test says so and checks that the path is neither supported nor chosen.
TEST(MatmulAmxTest, EqualsTheAvx512PathBitForBit) {
  if (!KernelPathSupported(KernelPath::kAmx)) {
    EXPECT_NE(BestKernelPath(), KernelPath::kAmx);
    GTEST_SKIP() << "this CPU (or OS) lacks AMX: the amx path is not supported, and not chosen";
  }
  EXPECT_EQ(BestKernelPath(), KernelPath::kAmx);
  ThreadPool pool2(2);
  for (GgmlType type : kTypes) {
    SCOPED_TRACE(std::string(TypeName(type)));
    for (int64_t n_in : {int64_t{768}, int64_t{2048}}) {
      const Problem p = MakeProblem(type, n_in, 75, 300, 5);
      for (int64_t n_tok : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 100, 255, 256, 300}) {
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
          Problem view = p;
          view.n_tok = n_tok;
          std::vector<float> want, got;
          {
            ForcedPath forced(KernelPath::kAvx512);
            want = RunMatmul(view, pool);
          }
          {
            ForcedPath forced(KernelPath::kAmx);
            got = RunMatmul(view, pool);
          }
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
              << "n_in=" << n_in << " n_tok=" << n_tok << (pool ? " 2 threads" : " 1 thread");
        }
      }
    }
  }
}

TEST(MatmulTest, ForcedPathIsReported) {
  for (KernelPath p : SupportedPaths()) {
    ForcedPath forced(p);
    EXPECT_EQ(ActiveKernelPath(), p);
  }
  EXPECT_EQ(ParseKernelPath("avx2"), KernelPath::kAvx2);
  EXPECT_EQ(ParseKernelPath("amx"), KernelPath::kAmx);
  EXPECT_FALSE(ParseKernelPath("sse9").has_value());
}

}  // namespace
}  // namespace tierlm
