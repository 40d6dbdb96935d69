#include "core/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <memory>

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

}  // namespace tierlm
