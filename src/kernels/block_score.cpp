#include "kernels/block_score.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu_features.h"
#include "kernels/quant.h"

namespace tierlm {

void QuestBlockScores(const float* q, int64_t group, int64_t hd, const uint16_t* base, int64_t stride,
                      const int32_t* ids, int64_t n, float* scores) {
  if (UsesAvx512(ActiveKernelPath()) && QuestBlockScoresAvx512(q, group, hd, base, stride, ids, n, scores)) return;
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* mn = base + static_cast<int64_t>(ids[j]) * stride;
    const uint16_t* mx = mn + hd;
    float best = -INFINITY;
    for (int64_t h = 0; h < group; ++h) {
      const float* qh = q + h * hd;
      float lane[16] = {};
      for (int64_t i = 0; i < hd; ++i) lane[i % 16] += std::max(qh[i] * F16ToF32(mn[i]), qh[i] * F16ToF32(mx[i]));
      // The AVX-512 fold: halves added pairwise, 16 -> 8 -> 4 -> 2 -> 1.
      for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; ++i) lane[i] += lane[i + w];
      best = std::max(best, lane[0]);
    }
    scores[j] = best;
  }
}

}  // namespace tierlm
