// Paged decode attention microbenchmark: S sequences decoding together (one query row each)
// over f16 keys and values at a given depth, TinyLlama-1.1B shape (32 query heads, 4 KV
// heads of 64), the sequences' blocks shuffled over a pool of 22 layers so that every call
// reads its keys and values from DRAM, as a decode step does (fourth argument 22), or
// one layer over and over (1: the keys and values stay in cache; what is left is compute).
//   attention_bench --benchmark_filter=BM_PagedDecode
// BM_PagedPrefill (below) times prompt rows at a depth instead; BM_FmaPeak gives one
// core's f32 FMA peak to read its GFLOP/s against.
// Arguments: sequences, depth (keys per sequence), threads, layers cycled.
// Counter kv_GB/s: key and value bytes read per second.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include <immintrin.h>

#include "core/thread_pool.h"
#include "kernels/cpu_features.h"
#include "kernels/paged_attention.h"
#include "kernels/paged_attention_internal.h"
#include "kv/paged_kv_store.h"

namespace tierlm {
namespace {

// sink: every query head of KV head g asks for 3 u_g and position 0 holds the key 4 u_g, so
// it scores about 32 standard deviations above the others (an attention sink): their
// softmax weights are under e^-86 of its.
void PagedDecodeCase(benchmark::State& state, bool sink) {
  const int64_t n_seq = state.range(0), depth = state.range(1);
  const int n_threads = static_cast<int>(state.range(2));
  const int64_t cycled = state.range(3);
  const int64_t n_layer = 22, n_head = 32, n_head_kv = 4, hd = 64;
  const int32_t B = 16;
  const int64_t per_seq = (depth + B - 1) / B;
  const int32_t n_blocks = static_cast<int32_t>(n_seq * per_seq);
  auto st = kv::PagedKvStore::Create(n_layer, n_head_kv, hd, kv::KvFormat{GgmlType::kF16, GgmlType::kF16, B}, n_blocks);
  if (!st.ok()) {
    state.SkipWithError(st.status().ToString().c_str());
    return;
  }
  std::mt19937 rng(3);
  std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> k(static_cast<size_t>(n_head_kv * hd)), v(k.size());
  for (int64_t l = 0; l < n_layer; ++l)
    for (int64_t s = 0; s < n_seq; ++s)
      for (int64_t p = 0; p < depth; ++p) {
        for (auto& x : k) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        st->Write(l, {ids[static_cast<size_t>(s * per_seq + p / B)], static_cast<int32_t>(p % B)}, k.data(), v.data());
      }
  std::vector<PagedQuery> rows(static_cast<size_t>(n_seq));
  for (int64_t s = 0; s < n_seq; ++s) rows[static_cast<size_t>(s)] = {ids.data() + s * per_seq, depth};
  std::vector<float> q(static_cast<size_t>(n_seq * n_head * hd)), out(q.size());
  for (auto& x : q) x = nd(rng);
  if (sink) {
    const int64_t G = n_head / n_head_kv;
    for (int64_t s = 0; s < n_seq; ++s) {
      for (int64_t g = 0; g < n_head_kv; ++g)
        for (int64_t i = 0; i < hd; ++i) {
          const float u = nd(rng);
          for (int64_t h = 0; h < G; ++h) q[static_cast<size_t>((s * n_head + g * G + h) * hd + i)] = 3 * u;
          k[static_cast<size_t>(g * hd + i)] = 4 * u;
        }
      for (auto& x : v) x = nd(rng);
      for (int64_t l = 0; l < n_layer; ++l) st->Write(l, {ids[static_cast<size_t>(s * per_seq)], 0}, k.data(), v.data());
    }
  }
  const AttentionShape shape{n_head, n_head_kv, hd, 0.125f};
  ThreadPool pool(n_threads);
  int64_t layer = 0;
  for (auto _ : state) {
    PagedAttention(shape, st->Layer(layer), rows, q.data(), out.data(), &pool);
    benchmark::ClobberMemory();
    layer = (layer + 1) % cycled;
  }
  state.counters["kv_GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(n_seq * depth * n_head_kv * hd * 2 * 2) / 1e9,
      benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(4 * n_seq * depth * n_head * hd) / 1e9,
      benchmark::Counter::kIsRate);
}

// One fold step of the AVX-512 kernel alone (32 keys into 8 query heads' running states,
// head size 64, everything in L1), with the running maximum `gap` above the keys' scores
// (which are about N(0, 1)): 6, as usual; 100, as beside an attention sink, where every
// weight is below e^-86 (Exp512's floor; below it the weights were subnormals, and each
// instruction touching them took a microcode assist). ns per step.
void BM_FoldStep(benchmark::State& state) {
  if (!UsesAvx512(ActiveKernelPath())) {
    state.SkipWithError("no AVX-512");
    return;
  }
  const float gap = static_cast<float>(state.range(0));
  const int64_t hd = 64, G = 8, part = 2 + hd;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> kt(32 * hd), v(32 * hd), q(G * hd), st(G * part);
  for (auto& x : kt) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  for (auto& x : q) x = nd(rng);
  for (int64_t h = 0; h < G; ++h) {
    st[h * part] = gap;
    st[h * part + 1] = 1.0f;
    for (int64_t i = 0; i < hd; ++i) st[h * part + 2 + i] = 1.0f;
  }
  for (auto _ : state) {
    PagedChunkT2Avx512(q.data(), G, hd, 0.125f, kt.data(), v.data(), 32, st.data(), part);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_FoldStep)->Arg(6)->Arg(100);

void BM_PagedDecode(benchmark::State& state) { PagedDecodeCase(state, false); }
void BM_PagedDecodeSink(benchmark::State& state) { PagedDecodeCase(state, true); }

BENCHMARK(BM_PagedDecodeSink)->Args({1, 4096, 1, 22})->Args({1, 4096, 2, 22})->Args({1, 16384, 2, 4})->UseRealTime();

BENCHMARK(BM_PagedDecode)
    ->Args({16, 512, 2, 22})
    ->Args({16, 512, 1, 22})
    ->Args({16, 512, 2, 1})
    ->Args({16, 512, 1, 1})
    ->Args({1, 4096, 2, 22})
    ->Args({1, 4096, 1, 22})
    ->Args({1, 4096, 1, 1})
    ->Args({1, 16384, 2, 4})
    ->UseRealTime();

// Prefill at depth: one sequence, `rows` query rows at positions depth .. depth + rows - 1
// (causal: row i sees depth + i + 1 keys), one layer's keys and values (they stay in cache:
// this is the attention compute of a prompt chunk). Counter GFLOP/s: 4 FLOP per key, head
// dimension and query head (scores and values), the softmax not counted.
// Arguments: rows, depth, threads.
void BM_PagedPrefill(benchmark::State& state) {
  const int64_t n_rows = state.range(0), depth = state.range(1);
  const int n_threads = static_cast<int>(state.range(2));
  const int64_t n_head = 32, n_head_kv = 4, hd = 64;
  const int32_t B = 16;
  const int64_t n_pos = depth + n_rows;
  const int32_t n_blocks = static_cast<int32_t>((n_pos + B - 1) / B);
  auto st = kv::PagedKvStore::Create(1, n_head_kv, hd, kv::KvFormat{GgmlType::kF16, GgmlType::kF16, B}, n_blocks);
  if (!st.ok()) {
    state.SkipWithError(st.status().ToString().c_str());
    return;
  }
  std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> k(static_cast<size_t>(n_head_kv * hd)), v(k.size());
  for (int64_t p = 0; p < n_pos; ++p) {
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    st->Write(0, {ids[static_cast<size_t>(p / B)], static_cast<int32_t>(p % B)}, k.data(), v.data());
  }
  std::vector<PagedQuery> rows(static_cast<size_t>(n_rows));
  double keys = 0;
  for (int64_t i = 0; i < n_rows; ++i) {
    rows[static_cast<size_t>(i)] = {ids.data(), depth + i + 1};
    keys += static_cast<double>(depth + i + 1);
  }
  std::vector<float> q(static_cast<size_t>(n_rows * n_head * hd)), out(q.size());
  for (auto& x : q) x = nd(rng);
  const AttentionShape shape{n_head, n_head_kv, hd, 0.125f};
  ThreadPool pool(n_threads);
  for (auto _ : state) {
    PagedAttention(shape, st->Layer(0), rows, q.data(), out.data(), &pool);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * keys * static_cast<double>(n_head * hd * 4) / 1e9,
      benchmark::Counter::kIsRate);
}

BENCHMARK(BM_PagedPrefill)->Args({64, 4096, 2})->Args({64, 4096, 1})->UseRealTime();

// The f32 FMA peak of one core, to read BM_PagedPrefill's GFLOP/s against: 16 independent
// chains of 512-bit FMAs (enough to cover the latency of two FMA units).
__attribute__((target("avx512f"), noinline)) float FmaChains(int64_t steps) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(1.0f + static_cast<float>(i) * 1e-6f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t k = 0; k < steps; ++k) {
    #pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  }
  float r = 0;
  for (int i = 0; i < 16; ++i) r += _mm512_reduce_add_ps(a[i]);
  return r;
}

void BM_FmaPeak(benchmark::State& state) {
  if (!KernelPathSupported(KernelPath::kAvx512)) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  constexpr int64_t kSteps = 1 << 20;
  for (auto _ : state) {
    int64_t steps = kSteps;
    benchmark::DoNotOptimize(steps);  // an opaque count: the call is not hoisted or folded
    benchmark::DoNotOptimize(FmaChains(steps));
  }
  state.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * kSteps * 16 * 32 / 1e9,
                                                 benchmark::Counter::kIsRate);
}

BENCHMARK(BM_FmaPeak)->UseRealTime();

}  // namespace
}  // namespace tierlm

BENCHMARK_MAIN();
