// KvCache: the keys and values of every past position, per layer.
//
// This first cache is one contiguous f32 block per layer, sized for n_ctx positions up
// front: k(layer) is [n_ctx][kv_dim], v(layer) likewise. Paged and tiered caches come
// later behind the same accessors.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"

namespace tierlm {

class KvCache {
 public:
  // The largest cache Create allocates; a context that needs more is refused up front.
  static constexpr uint64_t kMaxBytes = 64ull << 30;
  // Keys and values of n_ctx positions, n_layer layers, kv_dim floats each, in bytes
  // (a double: huge -c values do not overflow).
  static double Bytes(int64_t n_layer, int64_t n_ctx, int64_t kv_dim) {
    return 2.0 * static_cast<double>(n_layer) * static_cast<double>(n_ctx) * static_cast<double>(kv_dim) * sizeof(float);
  }
  // ResourceExhausted naming the size and the context when Bytes() is above kMaxBytes.
  static Status CheckSize(int64_t n_layer, int64_t n_ctx, int64_t kv_dim);
  // n_ctx positions of kv_dim floats for keys and for values in each of n_layer layers.
  static Result<KvCache> Create(int64_t n_layer, int64_t n_ctx, int64_t kv_dim);

  int64_t n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  // Positions filled so far; the next token goes at position n_past().
  int64_t n_past() const { return n_past_; }
  void set_n_past(int64_t n) { n_past_ = n; }
  uint64_t bytes() const { return static_cast<uint64_t>(data_.size()) * sizeof(float); }

  float* k(int64_t layer) { return data_.data() + (2 * layer) * n_ctx_ * kv_dim_; }
  float* v(int64_t layer) { return data_.data() + (2 * layer + 1) * n_ctx_ * kv_dim_; }

 private:
  int64_t n_layer_ = 0, n_ctx_ = 0, kv_dim_ = 0, n_past_ = 0;
  std::vector<float> data_;
};

}  // namespace tierlm
