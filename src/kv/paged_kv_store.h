// PagedKvStore: the bytes of a paged KV cache (the bookkeeping is KvBlockManager's).
//
// n_blocks blocks of block_size positions, for every layer, keys and values each in their
// own type (-ctk / -ctv: f32, f16, bf16, q8_0, q4_0). A position's row is n_head_kv heads
// of head_dim values, each head encoded on its own (so a quantized head never shares a
// block of 32 with its neighbour, and attention can decode one head). Layout: layer-major,
// then block: the keys of (layer, block) are block_size rows, then its values; so one
// (layer, block) is one contiguous run of bytes, the unit a tier would move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "format/ggml_type.h"
#include "kv/kv_block_manager.h"

namespace tierlm::kv {

struct KvFormat {
  GgmlType k_type = GgmlType::kF16;
  GgmlType v_type = GgmlType::kF16;
  int32_t block_size = 16;
};

// "f32", "f16", "bf16", "q8_0", "q4_0" (llama.cpp's -ctk / -ctv names).
Result<GgmlType> ParseKvType(const std::string& name);
// InvalidArgument unless `type` is a KV type whose blocks divide head_dim.
Status CheckKvType(GgmlType type, int64_t head_dim, const char* which);

// One layer's view, what attention reads.
struct PagedKvLayer {
  const uint8_t* base = nullptr;  // block 0 of this layer
  int64_t block_bytes = 0;        // from one block to the next
  int64_t v_offset = 0;           // values after the keys within a block
  int64_t k_row_bytes = 0, v_row_bytes = 0;  // one position, all heads
  int64_t k_head_bytes = 0, v_head_bytes = 0;
  GgmlType k_type = GgmlType::kF32, v_type = GgmlType::kF32;
  int32_t block_size = 0;
};

class PagedKvStore {
 public:
  static Result<PagedKvStore> Create(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format,
                                     int32_t n_blocks);
  // Bytes of one block for all layers, keys and values.
  static uint64_t BlockBytes(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format);

  const KvFormat& format() const { return format_; }
  int32_t n_blocks() const { return n_blocks_; }
  uint64_t bytes() const { return data_.size(); }

  // Encodes one position's keys and values (n_head_kv * head_dim floats each).
  void Write(int64_t layer, KvSlot slot, const float* k, const float* v);
  // Every layer's first n_used positions of block `from` into block `to`.
  void CopyBlock(BlockId from, BlockId to, int32_t n_used);
  PagedKvLayer Layer(int64_t layer) const;

 private:
  uint8_t* BlockBase(int64_t layer, BlockId b) {
    return data_.data() + (static_cast<size_t>(layer) * n_blocks_ + static_cast<size_t>(b)) * layer_block_bytes_;
  }
  int64_t n_layer_ = 0, n_head_kv_ = 0, head_dim_ = 0;
  int32_t n_blocks_ = 0;
  KvFormat format_;
  int64_t k_row_bytes_ = 0, v_row_bytes_ = 0, layer_block_bytes_ = 0;
  std::vector<uint8_t> data_;
};

}  // namespace tierlm::kv
