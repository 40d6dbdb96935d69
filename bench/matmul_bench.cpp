// Matmul microbenchmarks: GEMV (decode) bandwidth and GEMM (prefill) throughput.
//   matmul_bench --benchmark_filter=Q4_0
// Counters: weight_GB/s (weight bytes streamed per second, GEMV) and GFLOP/s (2 n_in n_out
// n_tok per call). TIERLM_KERNEL_PATH=scalar|avx2|avx512 picks the kernel path.
#include <benchmark/benchmark.h>

#include <immintrin.h>

// GCC 12 warns inside its own intrinsics (the undefined vectors its masked forms start
// from); the warnings are spurious.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu_features.h"
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

// A decode step's matmuls as a model sees them: TinyLlama-1.1B's seven matrices (q, k, v,
// o, gate, up, down) x 22 layers of Q4_0 (545 MiB, so every pass reads them from DRAM),
// each multiplied by the step's tokens (one per sequence decoding together). ms per pass
// is the figure docs/BENCHMARKS.md quotes for the batched kernels. Arguments: tokens, threads.
void BM_LayerMatmulsDram(benchmark::State& state) {
  const int64_t n_tok = state.range(0);
  const int n_threads = static_cast<int>(state.range(1));
  struct Shape {
    int64_t in, out;
  };
  const Shape layer[] = {{2048, 2048}, {2048, 256}, {2048, 256}, {2048, 2048}, {2048, 5632}, {2048, 5632}, {5632, 2048}};
  static std::vector<Fixture>* weights = nullptr;
  if (!weights) {
    weights = new std::vector<Fixture>;
    for (int l = 0; l < 22; ++l)
      for (const Shape& sh : layer) weights->emplace_back(GgmlType::kQ4_0, sh.in, sh.out);
  }
  ThreadPool pool(n_threads);
  std::vector<float> x(n_tok * 5632), y(n_tok * 5632);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (auto& v : x) v = dist(rng);
  for (auto _ : state) {
    for (const Fixture& f : *weights) {
      const WeightMatrix w{f.type, f.w.data(), f.n_in, f.n_out};
      Matmul(w, x.data(), f.n_in, n_tok, y.data(), f.n_out, &pool);
    }
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_LayerMatmulsDram)
    ->Args({8, 2})
    ->Args({16, 2})
    ->Args({64, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

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

// What 16 block scales (f16, one per weight row, rows 1152 bytes apart) cost to bring into
// one vector, the way the Q4_0 / Q8_0 kernels need them: by one 16-lane gather (mode 0), or
// by 16 scalar loads packed 4 to a quadword (mode 1, as LoadScales16 in
// kernels/panel_pack_avx512.h). ns per 16 scales; the sum keeps the loads live.
// Ice Lake Xeon (Gather Data Sampling mitigation): 13.9-14.1 ns gathered, 5.1-8.8 packed.
__attribute__((target("avx512f,avx512bw"), noinline)) int ScaleLoads(const uint8_t* buf, int64_t steps, bool gather) {
  alignas(64) int32_t o32[16];
  int64_t off[16];
  for (int r = 0; r < 16; ++r) off[r] = o32[r] = r * 1152;
  const __m512i idx = _mm512_load_si512(o32);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < steps; ++k) {
    const uint8_t* p = buf + (k & 63) * 18;
    __m256i h;
    if (gather) {
      h = _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(idx, p, 1));
    } else {
      uint64_t q[4];
      #pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        uint16_t v[4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) std::memcpy(&v[j], p + off[4 * i + j], 2);
        q[i] = uint64_t{v[0]} | uint64_t{v[1]} << 16 | uint64_t{v[2]} << 32 | uint64_t{v[3]} << 48;
      }
      h = _mm256_set_epi64x(static_cast<long long>(q[3]), static_cast<long long>(q[2]), static_cast<long long>(q[1]),
                            static_cast<long long>(q[0]));
    }
    acc = _mm512_add_ps(acc, _mm512_cvtph_ps(h));
  }
  return static_cast<int>(_mm512_reduce_add_ps(acc));
}

void BM_ScaleLoads(benchmark::State& state) {
  if (!KernelPathSupported(KernelPath::kAvx512)) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  std::vector<uint8_t> buf(16 * 1152 + 64 * 18 + 64);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 7 % 61);  // small finite f16s
  constexpr int64_t kSteps = 1 << 16;
  for (auto _ : state) {
    int64_t steps = kSteps;
    benchmark::DoNotOptimize(steps);
    benchmark::DoNotOptimize(ScaleLoads(buf.data(), steps, state.range(0) == 0));
  }
  state.counters["ns_per_16"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kSteps / 1e9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(BM_ScaleLoads)->Arg(0)->Arg(1);

}  // namespace
}  // namespace tierlm

BENCHMARK_MAIN();
