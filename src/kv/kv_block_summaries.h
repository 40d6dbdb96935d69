// KvBlockSummaries: per (layer, block, KV head), the element-wise minimum and maximum of
// the block's keys (after RoPE, as the store holds them: decoded from the block's type),
// the small resident digest sparse retrieval scores blocks by (Quest: an upper bound on
// q.k over the block is sum_i max(q_i * min_i, q_i * max_i)).
//
// Kept in memory whatever tier the blocks are on: 2 * head_dim halves (binary16) per
// (layer, block, KV head), 1/16 of an f16 block of 16 positions' keys and values. Minimums
// are rounded down and maximums up (F32ToF16Down/Up), so the bounds stay bounds; for f16
// keys (the default) they are exact. Updated as keys are
// written (a block's first position resets it), copied with a copy-on-write block (a
// bound over more positions is still a bound), recomputed from the bytes of an imported
// block.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_block_manager.h"

namespace tierlm::kv {

class KvBlockSummaries {
 public:
  KvBlockSummaries() = default;
  KvBlockSummaries(int64_t n_layer, int32_t n_blocks, int64_t n_head_kv, int64_t head_dim);

  bool enabled() const { return !data_.empty(); }
  uint64_t bytes() const { return data_.size() * sizeof(uint16_t) + sums_.size() * sizeof(float); }
  int64_t head_dim() const { return head_dim_; }
  int64_t n_head_kv() const { return n_head_kv_; }

  // One position's keys (n_head_kv * head_dim floats) at `offset` of block b in `layer`:
  // offset 0 starts the block's bounds afresh, later offsets widen them.
  void Add(int64_t layer, BlockId b, int32_t offset, const float* k);
  // Block `to` takes `from`'s bounds (and sums) in every layer.
  void Copy(BlockId from, BlockId to);

  // Optional sums of each block's decoded keys and values per KV head (EnableSums), for
  // sparse attention that folds a skipped block in as its mean key and value.
  void EnableSums() {
    if (sums_.empty()) sums_.assign(static_cast<size_t>(n_layer_ * n_blocks_ * n_head_kv_ * 2 * head_dim_), 0.0f);
  }
  bool has_sums() const { return !sums_.empty(); }
  // Adds one position's values (and, with keys, restarts the sums at offset 0).
  void AddSums(int64_t layer, BlockId b, int32_t offset, const float* k, const float* v);
  // [block][head][key sums hd, value sums hd] of one layer.
  const float* LayerSums(int64_t layer) const {
    return sums_.data() + static_cast<size_t>(layer) * n_blocks_ * n_head_kv_ * 2 * head_dim_;
  }
  // min then max, head_dim halves each, of KV head g of block b in `layer`.
  const uint16_t* Bounds(int64_t layer, BlockId b, int64_t g) const {
    return data_.data() + ((static_cast<size_t>(layer) * n_blocks_ + static_cast<size_t>(b)) * n_head_kv_ +
                           static_cast<size_t>(g)) * 2 * head_dim_;
  }

 private:
  uint16_t* Mutable(int64_t layer, BlockId b, int64_t g) { return const_cast<uint16_t*>(Bounds(layer, b, g)); }
  int64_t n_layer_ = 0, n_head_kv_ = 0, head_dim_ = 0;
  int32_t n_blocks_ = 0;
  std::vector<uint16_t> data_;  // [layer][block][head][min hd, max hd], binary16
  std::vector<float> sums_;  // [layer][block][head][key sums hd, value sums hd], or empty
};

}  // namespace tierlm::kv
