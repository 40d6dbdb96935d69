// Matmul microbenchmarks: GEMV (decode) bandwidth and GEMM (prefill) throughput.
//   matmul_bench --benchmark_filter=Q4_0
// Counters: weight_GB/s (weight bytes streamed per second, GEMV) and GFLOP/s (2 n_in n_out
// n_tok per call). TIERLM_KERNEL_PATH=scalar|avx2|avx512 picks the kernel path.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

namespace tierlm {
namespace {

struct Fixture {
  GgmlType type;
  int64_t n_in, n_out;
  std::vector<uint8_t> w;

  Fixture(GgmlType t, int64_t in, int64_t out) : type(t), n_in(in), n_out(out) {
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<float> row(n_in);
    const int64_t rb = RowBytes(type, n_in);
    w.resize(rb * n_out);
    for (int64_t o = 0; o < n_out; ++o) {
      for (auto& v : row) v = dist(rng);
      QuantizeRow(type, row.data(), w.data() + o * rb, n_in);
    }
  }
};

void BM_Matmul(benchmark::State& state, GgmlType type) {
  const int64_t n_in = 2048, n_out = 5632;
  const int64_t n_tok = state.range(0);
  const int n_threads = static_cast<int>(state.range(1));
  static Fixture* fixtures[64] = {};
  Fixture*& f = fixtures[static_cast<int>(type)];
  if (!f) f = new Fixture(type, n_in, n_out);
  ThreadPool pool(n_threads);
  std::vector<float> x(n_tok * n_in), y(n_tok * n_out);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (auto& v : x) v = dist(rng);
  const WeightMatrix w{type, f->w.data(), n_in, n_out};
  for (auto _ : state) {
    Matmul(w, x.data(), n_in, n_tok, y.data(), n_out, &pool);
    benchmark::ClobberMemory();
  }
  const double calls = static_cast<double>(state.iterations());
  state.counters["weight_GB/s"] =
      benchmark::Counter(calls * f->w.size() / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(calls * 2.0 * n_in * n_out * n_tok / 1e9, benchmark::Counter::kIsRate);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (int n_tok : {1, 2, 4, 8, 16, 64, 512}) b->Args({n_tok, threads});
  b->UseRealTime();
}

// Decode as a model sees it: one token (or 16, one step of 16 sequences decoding together)
// against weights that are not in any cache. Cycles
// through copies of the matrix totalling >= 256 MiB, so every call streams from DRAM
// (the 2048 x 5632 matrix alone fits in L3 and overstates GEMV bandwidth).
void BM_GemvDram(benchmark::State& state, GgmlType type) {
  const int64_t n_in = 2048, n_out = 5632;
  const int n_threads = static_cast<int>(state.range(0));
  const int64_t n_tok = state.range(1);
  static Fixture* fixtures[64] = {};
  Fixture*& f = fixtures[static_cast<int>(type)];
  if (!f) f = new Fixture(type, n_in, n_out);
  const size_t copies = std::max<size_t>(2, (256ull << 20) / f->w.size());
  std::vector<std::vector<uint8_t>> ws(copies, f->w);
  ThreadPool pool(n_threads);
  std::vector<float> x(n_tok * n_in, 0.5f), y(n_tok * n_out);
  size_t i = 0;
  for (auto _ : state) {
    const WeightMatrix w{type, ws[i].data(), n_in, n_out};
    Matmul(w, x.data(), n_in, n_tok, y.data(), n_out, &pool);
    benchmark::ClobberMemory();
    i = (i + 1) % copies;
  }
  state.counters["weight_GB/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * f->w.size() / 1e9, benchmark::Counter::kIsRate);
}

// Second argument: tokens per call (16: a step of 16 sequences decoding together).
void DramArgs(benchmark::internal::Benchmark* b) {
  for (int n_tok : {1, 16}) b->Args({1, n_tok})->Args({2, n_tok});
  b->UseRealTime();
}

BENCHMARK_CAPTURE(BM_GemvDram, Q4_0, GgmlType::kQ4_0)->Apply(DramArgs);
BENCHMARK_CAPTURE(BM_GemvDram, Q8_0, GgmlType::kQ8_0)->Apply(DramArgs);
BENCHMARK_CAPTURE(BM_GemvDram, Q4_K, GgmlType::kQ4_K)->Apply(DramArgs);
BENCHMARK_CAPTURE(BM_GemvDram, Q6_K, GgmlType::kQ6_K)->Apply(DramArgs);
BENCHMARK_CAPTURE(BM_GemvDram, BF16, GgmlType::kBF16)->Apply(DramArgs);

BENCHMARK_CAPTURE(BM_Matmul, Q4_0, GgmlType::kQ4_0)->Apply(Args);
BENCHMARK_CAPTURE(BM_Matmul, Q8_0, GgmlType::kQ8_0)->Apply(Args);
BENCHMARK_CAPTURE(BM_Matmul, Q4_K, GgmlType::kQ4_K)->Apply(Args);
BENCHMARK_CAPTURE(BM_Matmul, Q6_K, GgmlType::kQ6_K)->Apply(Args);
BENCHMARK_CAPTURE(BM_Matmul, F16, GgmlType::kF16)->Apply(Args);
BENCHMARK_CAPTURE(BM_Matmul, BF16, GgmlType::kBF16)->Apply(Args);

}  // namespace
}  // namespace tierlm

BENCHMARK_MAIN();
