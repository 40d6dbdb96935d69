// The read probe's inner loop with 256-bit loads (compiled with AVX2 flags; called only when
// the CPU has AVX2): eight independent accumulators, 256 bytes per step, so the loop is bound
// by memory and not by the adds.
#include <immintrin.h>

#include <cstdint>

#include "core/read_sum.h"

namespace tierlm {

uint64_t SumWordsAvx2(const uint64_t* p, int64_t n) {
  __m256i acc[8];
  for (auto& v : acc) v = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
      acc[k] = _mm256_add_epi64(acc[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4 * k)));
  __m256i t = acc[0];
  for (int k = 1; k < 8; ++k) t = _mm256_add_epi64(t, acc[k]);
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), t);
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace tierlm
