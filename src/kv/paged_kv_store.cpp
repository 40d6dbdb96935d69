#include "kv/paged_kv_store.h"

#include <cstring>
#include <new>

#include "kernels/quant.h"

namespace tierlm::kv {

Result<GgmlType> ParseKvType(const std::string& name) {
  if (name == "f32") return GgmlType::kF32;
  if (name == "f16") return GgmlType::kF16;
  if (name == "bf16") return GgmlType::kBF16;
  if (name == "q8_0") return GgmlType::kQ8_0;
  if (name == "q4_0") return GgmlType::kQ4_0;
  return Status::InvalidArgument("unknown KV cache type '" + name + "' (f32, f16, bf16, q8_0, q4_0)");
}

Status CheckKvType(GgmlType type, int64_t head_dim, const char* which) {
  if (type != GgmlType::kF32 && type != GgmlType::kF16 && type != GgmlType::kBF16 && type != GgmlType::kQ8_0 &&
      type != GgmlType::kQ4_0)
    return Status::InvalidArgument(std::string(which) + ": type " + std::string(TypeName(type)) +
                                   " is not a KV cache type (f32, f16, bf16, q8_0, q4_0)");
  const int64_t blk = TypeTraits(type).block_size;
  if (head_dim % blk != 0)
    return Status::InvalidArgument(std::string(which) + " " + std::string(TypeName(type)) + ": the model's head size " +
                                   std::to_string(head_dim) + " is not a multiple of the type's block of " +
                                   std::to_string(blk) + " values (use f16, bf16 or f32)");
  return Status::Ok();
}

uint64_t PagedKvStore::BlockBytes(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& f) {
  const uint64_t row = static_cast<uint64_t>(n_head_kv) *
                       (RowBytes(f.k_type, head_dim) + RowBytes(f.v_type, head_dim));
  return static_cast<uint64_t>(n_layer) * f.block_size * row;
}

Result<PagedKvStore> PagedKvStore::Create(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format,
                                          int32_t n_blocks) {
  TIERLM_RETURN_IF_ERROR(CheckKvType(format.k_type, head_dim, "-ctk"));
  TIERLM_RETURN_IF_ERROR(CheckKvType(format.v_type, head_dim, "-ctv"));
  if (format.block_size <= 0 || n_blocks <= 0 || n_layer <= 0 || n_head_kv <= 0)
    return Status::InvalidArgument("kv: empty paged cache (" + std::to_string(n_blocks) + " blocks of " +
                                   std::to_string(format.block_size) + ")");
  PagedKvStore s;
  s.n_layer_ = n_layer;
  s.n_head_kv_ = n_head_kv;
  s.head_dim_ = head_dim;
  s.n_blocks_ = n_blocks;
  s.format_ = format;
  s.k_row_bytes_ = n_head_kv * RowBytes(format.k_type, head_dim);
  s.v_row_bytes_ = n_head_kv * RowBytes(format.v_type, head_dim);
  s.layer_block_bytes_ = format.block_size * (s.k_row_bytes_ + s.v_row_bytes_);
  const double total = static_cast<double>(s.layer_block_bytes_) * n_layer * n_blocks;
  if (total > static_cast<double>(64ull << 30))
    return Status::ResourceExhausted("kv: a paged cache of " + std::to_string(static_cast<uint64_t>(total / 1048576)) +
                                     " MiB is over the 64 GiB limit");
  try {
    s.data_.assign(static_cast<size_t>(total), 0);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("kv: cannot allocate " + std::to_string(static_cast<uint64_t>(total / 1048576)) +
                                     " MiB for the KV cache");
  }
  return s;
}

void PagedKvStore::Write(int64_t layer, KvSlot slot, const float* k, const float* v) {
  uint8_t* base = BlockBase(layer, slot.block);
  uint8_t* kd = base + slot.offset * k_row_bytes_;
  uint8_t* vd = base + format_.block_size * k_row_bytes_ + slot.offset * v_row_bytes_;
  const int64_t kh = RowBytes(format_.k_type, head_dim_), vh = RowBytes(format_.v_type, head_dim_);
  for (int64_t h = 0; h < n_head_kv_; ++h) {
    QuantizeRow(format_.k_type, k + h * head_dim_, kd + h * kh, head_dim_);
    QuantizeRow(format_.v_type, v + h * head_dim_, vd + h * vh, head_dim_);
  }
}

void PagedKvStore::CopyBlock(BlockId from, BlockId to, int32_t n_used) {
  for (int64_t l = 0; l < n_layer_; ++l) {
    const uint8_t* src = BlockBase(l, from);
    uint8_t* dst = BlockBase(l, to);
    std::memcpy(dst, src, static_cast<size_t>(n_used * k_row_bytes_));
    const int64_t vo = format_.block_size * k_row_bytes_;
    std::memcpy(dst + vo, src + vo, static_cast<size_t>(n_used * v_row_bytes_));
  }
}

PagedKvLayer PagedKvStore::Layer(int64_t layer) const {
  PagedKvLayer v;
  v.base = data_.data() + static_cast<size_t>(layer) * n_blocks_ * layer_block_bytes_;
  v.block_bytes = layer_block_bytes_;
  v.v_offset = format_.block_size * k_row_bytes_;
  v.k_row_bytes = k_row_bytes_;
  v.v_row_bytes = v_row_bytes_;
  v.k_head_bytes = RowBytes(format_.k_type, head_dim_);
  v.v_head_bytes = RowBytes(format_.v_type, head_dim_);
  v.k_type = format_.k_type;
  v.v_type = format_.v_type;
  v.block_size = format_.block_size;
  return v;
}

}  // namespace tierlm::kv
