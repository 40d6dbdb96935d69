#include "kv/kv_block_summaries.h"

#include <algorithm>
#include <cstring>

#include "kernels/quant.h"

namespace tierlm::kv {

KvBlockSummaries::KvBlockSummaries(int64_t n_layer, int32_t n_blocks, int64_t n_head_kv, int64_t head_dim)
    : n_layer_(n_layer), n_head_kv_(n_head_kv), head_dim_(head_dim), n_blocks_(n_blocks),
      data_(static_cast<size_t>(n_layer * n_blocks * n_head_kv * 2 * head_dim), 0) {}

void KvBlockSummaries::Add(int64_t layer, BlockId b, int32_t offset, const float* k) {
  for (int64_t g = 0; g < n_head_kv_; ++g) {
    uint16_t* mn = Mutable(layer, b, g);
    uint16_t* mx = mn + head_dim_;
    const float* kg = k + g * head_dim_;
    for (int64_t i = 0; i < head_dim_; ++i) {
      // Rounding is monotonic: the min of the rounded-down keys is the rounded-down min.
      const uint16_t lo = F32ToF16Down(kg[i]), hi = F32ToF16Up(kg[i]);
      if (offset == 0 || F16ToF32(lo) < F16ToF32(mn[i])) mn[i] = lo;
      if (offset == 0 || F16ToF32(hi) > F16ToF32(mx[i])) mx[i] = hi;
    }
  }
}

void KvBlockSummaries::Copy(BlockId from, BlockId to) {
  const size_t n = static_cast<size_t>(n_head_kv_ * 2 * head_dim_);
  for (int64_t l = 0; l < n_layer_; ++l) std::memmove(Mutable(l, to, 0), Bounds(l, from, 0), n * sizeof(uint16_t));
  if (sums_.empty()) return;
  for (int64_t l = 0; l < n_layer_; ++l) {
    float* base = const_cast<float*>(LayerSums(l));
    std::memmove(base + static_cast<size_t>(to) * n, base + static_cast<size_t>(from) * n, n * sizeof(float));
  }
}

void KvBlockSummaries::AddSums(int64_t layer, BlockId b, int32_t offset, const float* k, const float* v) {
  if (sums_.empty()) return;
  float* base = const_cast<float*>(LayerSums(layer)) + static_cast<size_t>(b) * n_head_kv_ * 2 * head_dim_;
  for (int64_t g = 0; g < n_head_kv_; ++g) {
    float* ks = base + g * 2 * head_dim_;
    float* vs = ks + head_dim_;
    if (offset == 0) {
      std::fill_n(ks, 2 * head_dim_, 0.0f);
    }
    for (int64_t i = 0; i < head_dim_; ++i) {
      ks[i] += k[g * head_dim_ + i];
      vs[i] += v[g * head_dim_ + i];
    }
  }
}

}  // namespace tierlm::kv
