#include "core/memory_bandwidth.h"

#include "core/read_sum.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <new>

namespace tierlm {

double MeasureTriadBandwidth(ThreadPool* pool, uint64_t array_bytes, int reps) {
  const int64_t n = static_cast<int64_t>(array_bytes / sizeof(float));
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  // First touch from the threads that will use the pages.
  pool->ParallelFor(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      a[i] = 0.0f;
      b[i] = 1.0f;
      c[i] = 2.0f;
    }
  });
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const float s = 0.5f + static_cast<float>(r);
    const auto t0 = std::chrono::steady_clock::now();
    pool->ParallelFor(n, 1 << 16, [&](int64_t lo, int64_t hi) {
      float* __restrict pa = a.get();
      const float* __restrict pb = b.get();
      const float* __restrict pc = c.get();
      for (int64_t i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 3.0 * static_cast<double>(n) * sizeof(float) / secs);
  }
  // Keep the result observable so the loop is not optimized away.
  volatile float sink = a[n / 2];
  (void)sink;
  return best;
}

double MeasureReadBandwidth(ThreadPool* pool, uint64_t array_bytes, int reps) {
  const int64_t n = static_cast<int64_t>(array_bytes / sizeof(uint64_t));
  if (n <= 0) return 0;
  std::unique_ptr<uint64_t[]> a(new (std::nothrow) uint64_t[n]);
  if (!a) return 0;
  // ParallelFor gives each thread one contiguous share: it first-touches its pages, then
  // streams them, as a decode thread streams its own run of weight rows.
  pool->ParallelFor(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) a[i] = static_cast<uint64_t>(i);
  });
  std::atomic<uint64_t> sum{0};
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool->ParallelFor(n, 1 << 16, [&](int64_t lo, int64_t hi) {
      const uint64_t total = SumWords(a.get() + lo, hi - lo);
      sum.fetch_add(total, std::memory_order_relaxed);
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) * sizeof(uint64_t) / secs);
  }
  volatile uint64_t sink = sum.load();  // the sums are used: the reads are not optimized away
  (void)sink;
  return best;
}

uint64_t ReadProbeBytes() {
  uint64_t bytes = 256ull << 20;
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) bytes = std::max(bytes, 2 * static_cast<uint64_t>(l3));
#endif
  bytes = std::min<uint64_t>(bytes, 1ull << 30);
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) bytes = std::min<uint64_t>(bytes, static_cast<uint64_t>(pages) * page / 8);
  return bytes;
}

}  // namespace tierlm
