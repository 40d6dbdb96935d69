#include "kv/paged_kv_store.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "kernels/quant.h"
#include "tiers/mru_policy.h"

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

uint64_t PagedKvStore::TieredSlotBytes(int64_t n_head_kv, int64_t head_dim, const KvFormat& f) {
  const uint64_t row = static_cast<uint64_t>(n_head_kv) *
                       (RowBytes(f.k_type, head_dim) + RowBytes(f.v_type, head_dim));
  return io::AlignUp(static_cast<uint64_t>(f.block_size) * row);
}

namespace {

Status CheckShape(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format, int32_t n_blocks) {
  TIERLM_RETURN_IF_ERROR(CheckKvType(format.k_type, head_dim, "-ctk"));
  TIERLM_RETURN_IF_ERROR(CheckKvType(format.v_type, head_dim, "-ctv"));
  if (format.block_size <= 0 || n_blocks <= 0 || n_layer <= 0 || n_head_kv <= 0)
    return Status::InvalidArgument("kv: empty paged cache (" + std::to_string(n_blocks) + " blocks of " +
                                   std::to_string(format.block_size) + ")");
  return Status::Ok();
}

}  // namespace

PagedKvStore PagedKvStore::Shaped(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format,
                                  int32_t n_blocks) {
  PagedKvStore s;
  s.n_layer_ = n_layer;
  s.n_head_kv_ = n_head_kv;
  s.head_dim_ = head_dim;
  s.n_blocks_ = n_blocks;
  s.format_ = format;
  s.k_row_bytes_ = RowBytes(format.k_type, head_dim);
  s.v_row_bytes_ = RowBytes(format.v_type, head_dim);
  s.layer_block_bytes_ = format.block_size * n_head_kv * (s.k_row_bytes_ + s.v_row_bytes_);
  return s;
}

Result<PagedKvStore> PagedKvStore::CreateTiered(int64_t n_layer, int64_t n_head_kv, int64_t head_dim,
                                                const KvFormat& format, int32_t n_blocks, const KvTierOptions& tier) {
  TIERLM_RETURN_IF_ERROR(CheckShape(n_layer, n_head_kv, head_dim, format, n_blocks));
  if (!tier.env) return Status::InvalidArgument("kv: a tiered cache needs a storage env");
  PagedKvStore s = Shaped(n_layer, n_head_kv, head_dim, format, n_blocks);
  const uint64_t slot = TieredSlotBytes(n_head_kv, head_dim, format);
  const uint64_t n_entries = static_cast<uint64_t>(n_layer) * static_cast<uint64_t>(n_blocks);
  if (tier.budget_bytes < 2 * slot * static_cast<uint64_t>(n_layer) || tier.budget_bytes < 2 * slot)
    return Status::OutOfRange("kv: a memory share of " + std::to_string(tier.budget_bytes) +
                              " bytes cannot hold two blocks of every layer (" + std::to_string(slot) + " bytes each)");
  TIERLM_ASSIGN_OR_RETURN(s.spill_, tier.env->CreateSpillFile(tier.spill_dir, n_entries * slot));
  ResidencyOptions ro;
  ro.budget_bytes = tier.budget_bytes;
  ro.clock = tier.clock;
  TIERLM_ASSIGN_OR_RETURN(s.manager_, ResidencyManager::Create(ro, std::make_unique<MruPolicy>()));
  for (int64_t l = 0; l < n_layer; ++l)
    for (BlockId b = 0; b < n_blocks; ++b) {
      EntrySpec e;
      e.name = "layer " + std::to_string(l) + " block " + std::to_string(b);
      e.cls = EntryClass::kKv;
      e.file = s.spill_.get();
      e.offset = (static_cast<uint64_t>(l) * static_cast<uint64_t>(n_blocks) + static_cast<uint64_t>(b)) * slot;
      e.size = static_cast<uint64_t>(s.layer_block_bytes_);
      e.writable = true;
      e.layer = static_cast<int32_t>(l);
      e.block = b;
      TIERLM_ASSIGN_OR_RETURN(const EntryId id, s.manager_->Register(e));
      if (l == 0 && b == 0) s.first_entry_ = id;
    }
  s.table_.assign(static_cast<size_t>(n_blocks), nullptr);
  return s;
}

Result<PagedKvStore> PagedKvStore::Create(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format,
                                          int32_t n_blocks) {
  TIERLM_RETURN_IF_ERROR(CheckShape(n_layer, n_head_kv, head_dim, format, n_blocks));
  PagedKvStore s = Shaped(n_layer, n_head_kv, head_dim, format, n_blocks);
  const double total = static_cast<double>(s.layer_block_bytes_) * n_layer * n_blocks;
  if (total > static_cast<double>(64ull << 30))
    return Status::ResourceExhausted("kv: a paged cache of " + std::to_string(static_cast<uint64_t>(total / 1048576)) +
                                     " MiB is over the 64 GiB limit");
  // Mapped, not allocated: pages are committed as blocks are first written, and huge pages
  // spare the TLB a miss per block when attention walks a sequence's scattered blocks.
  TIERLM_ASSIGN_OR_RETURN(s.data_, MappedMemory::Create(static_cast<uint64_t>(total), "the KV cache"));
  s.bytes_ = static_cast<uint64_t>(total);
  s.table_.resize(static_cast<size_t>(n_layer) * static_cast<size_t>(n_blocks));
  for (size_t i = 0; i < s.table_.size(); ++i) s.table_[i] = s.data_.data() + i * static_cast<size_t>(s.layer_block_bytes_);
  return s;
}

uint64_t PagedKvStore::bytes() const { return manager_ ? manager_->capacity() : bytes_; }

void PagedKvStore::PinLayer(int64_t layer, std::span<const BlockId> read, std::span<const BlockId> write,
                            std::vector<BlockFailure>* failed) {
  if (!manager_) return;
  UnpinLayer();
  pinned_layer_ = layer;
  // Every read this layer needs goes to the device at once (the queue keeps many in flight),
  // before waiting on the first.
  PrefetchLayer(layer, read);
  auto pin = [&](BlockId b, bool for_write) {
    if (table_[static_cast<size_t>(b)]) return;  // pinned already (written blocks are read too)
    const EntryId id = EntryOf(layer, b);
    Result<ResidencyPin> p = for_write ? manager_->AcquireForWrite(id) : manager_->Acquire(id);
    if (!p.ok()) {
      failed->push_back({b, p.status()});
      return;
    }
    table_[static_cast<size_t>(b)] = const_cast<uint8_t*>(p->data());
    pins_.push_back(std::move(*p));
  };
  for (BlockId b : write) pin(b, true);
  for (BlockId b : read) pin(b, false);
}

void PagedKvStore::UnpinLayer() {
  if (!manager_) return;
  for (const ResidencyPin& p : pins_) table_[static_cast<size_t>((p.id() - first_entry_) % n_blocks_)] = nullptr;
  pins_.clear();
  pinned_layer_ = -1;
}

void PagedKvStore::PrefetchLayer(int64_t layer, std::span<const BlockId> blocks) {
  if (!manager_ || layer < 0 || layer >= n_layer_) return;
  std::vector<EntryId> ids;
  ids.reserve(blocks.size());
  for (BlockId b : blocks) ids.push_back(EntryOf(layer, b));
  (void)manager_->Prefetch(ids);
}

void PagedKvStore::Discard(BlockId b) {
  if (!manager_) return;
  for (int64_t l = 0; l < n_layer_; ++l) manager_->Discard(EntryOf(l, b));
}

KvTierStats PagedKvStore::TierStats() const {
  KvTierStats t;
  if (!manager_) {
    t.resident_bytes = bytes_;
    t.budget_bytes = bytes_;
    return t;
  }
  t.tiered = true;
  t.residency = manager_->Stats();
  t.budget_bytes = t.residency.capacity_bytes;
  t.resident_bytes = t.residency.resident_bytes;
  t.spill_file = spill_->stats();
  t.spilled_bytes = t.spill_file.bytes_written;
  t.read_bytes = t.spill_file.bytes_read;
  t.spill_capacity_bytes = spill_->size();
  return t;
}

void DequantizeKey(const PagedKvLayer& L, const uint8_t* block, int64_t g, int64_t p, int64_t hd, float* dst) {
  const uint8_t* head = block + g * L.k_head_stride;
  if (!L.k_transposed) {
    DequantizeRow(L.k_type, head + p * L.k_pos_bytes, dst, hd);
    return;
  }
  const uint16_t* e = reinterpret_cast<const uint16_t*>(head) + p;
  const bool f16 = L.k_type == GgmlType::kF16;
  for (int64_t d = 0; d < hd; ++d) {
    const uint16_t x = e[d * L.block_size];
    dst[d] = f16 ? F16ToF32(x) : Bf16ToF32(x);
  }
}

void PagedKvStore::Write(int64_t layer, KvSlot slot, const float* k, const float* v) {
  uint8_t* base = manager_ ? table_[static_cast<size_t>(slot.block)]
                           : table_[static_cast<size_t>(layer) * n_blocks_ + static_cast<size_t>(slot.block)];
  const PagedKvLayer L = View();
  for (int64_t h = 0; h < n_head_kv_; ++h) {
    if (L.k_transposed) {
      uint16_t* e = reinterpret_cast<uint16_t*>(base + h * L.k_head_stride) + slot.offset;
      const float* kh = k + h * head_dim_;
      const bool f16 = format_.k_type == GgmlType::kF16;
      for (int64_t d = 0; d < head_dim_; ++d) e[d * L.block_size] = f16 ? F32ToF16(kh[d]) : F32ToBf16(kh[d]);
    } else {
      QuantizeRow(format_.k_type, k + h * head_dim_, base + h * L.k_head_stride + slot.offset * L.k_pos_bytes,
                  head_dim_);
    }
    QuantizeRow(format_.v_type, v + h * head_dim_,
                base + L.v_offset + h * L.v_head_stride + slot.offset * L.v_pos_bytes, head_dim_);
  }
  if (summaries_.enabled()) SummarizeKeys(layer, slot.block, slot.offset, base);
}

void PagedKvStore::EnableSummaries(bool with_sums) {
  if (!summaries_.enabled()) summaries_ = KvBlockSummaries(n_layer_, n_blocks_, n_head_kv_, head_dim_);
  if (with_sums) summaries_.EnableSums();
}

void PagedKvStore::SummarizeKeys(int64_t layer, BlockId b, int32_t offset, const uint8_t* block) {
  const PagedKvLayer L = View();
  key_row_.resize(static_cast<size_t>(n_head_kv_ * head_dim_));
  for (int64_t h = 0; h < n_head_kv_; ++h) DequantizeKey(L, block, h, offset, head_dim_, key_row_.data() + h * head_dim_);
  summaries_.Add(layer, b, offset, key_row_.data());
  if (!summaries_.has_sums()) return;
  value_row_.resize(static_cast<size_t>(n_head_kv_ * head_dim_));
  for (int64_t h = 0; h < n_head_kv_; ++h)
    DequantizeRow(format_.v_type, block + L.v_offset + h * L.v_head_stride + offset * L.v_pos_bytes,
                  value_row_.data() + h * head_dim_, head_dim_);
  summaries_.AddSums(layer, b, offset, key_row_.data(), value_row_.data());
}

Status PagedKvStore::CopyBlock(BlockId from, BlockId to, int32_t n_used) {
  const PagedKvLayer L = View();
  const int64_t k_elem = L.k_pos_bytes / head_dim_;  // bytes per element of transposed keys
  auto copy = [&](const uint8_t* src, uint8_t* dst) {  // each head's first n_used positions
    for (int64_t h = 0; h < n_head_kv_; ++h) {
      if (L.k_transposed) {
        for (int64_t d = 0; d < head_dim_; ++d) {
          const int64_t at = h * L.k_head_stride + d * L.block_size * k_elem;
          std::memcpy(dst + at, src + at, static_cast<size_t>(n_used * k_elem));
        }
      } else {
        std::memcpy(dst + h * L.k_head_stride, src + h * L.k_head_stride, static_cast<size_t>(n_used * L.k_pos_bytes));
      }
      const int64_t v = L.v_offset + h * L.v_head_stride;
      std::memcpy(dst + v, src + v, static_cast<size_t>(n_used * L.v_pos_bytes));
    }
  };
  for (int64_t l = 0; l < n_layer_; ++l) {
    if (!manager_) {
      const size_t row = static_cast<size_t>(l) * n_blocks_;
      copy(table_[row + static_cast<size_t>(from)], table_[row + static_cast<size_t>(to)]);
      continue;
    }
    TIERLM_ASSIGN_OR_RETURN(ResidencyPin src, manager_->Acquire(EntryOf(l, from)));
    TIERLM_ASSIGN_OR_RETURN(ResidencyPin dst, manager_->AcquireForWrite(EntryOf(l, to)));
    copy(src.data(), dst.mutable_data());
  }
  if (summaries_.enabled()) summaries_.Copy(from, to);
  return Status::Ok();
}

Status PagedKvStore::ExportBlock(BlockId b, uint8_t* out) {
  const size_t n = static_cast<size_t>(layer_block_bytes_);
  for (int64_t l = 0; l < n_layer_; ++l, out += n) {
    if (!manager_) {
      std::memcpy(out, table_[static_cast<size_t>(l) * n_blocks_ + static_cast<size_t>(b)], n);
      continue;
    }
    Result<ResidencyPin> p = manager_->Acquire(EntryOf(l, b));
    if (!p.ok()) return p.status().WithContext("kv: export of block " + std::to_string(b) + " layer " + std::to_string(l));
    std::memcpy(out, p->data(), n);
  }
  return Status::Ok();
}

Status PagedKvStore::ImportBlock(BlockId b, const uint8_t* in) {
  const size_t n = static_cast<size_t>(layer_block_bytes_);
  for (int64_t l = 0; l < n_layer_; ++l, in += n) {
    if (!manager_) {
      std::memcpy(table_[static_cast<size_t>(l) * n_blocks_ + static_cast<size_t>(b)], in, n);
    } else {
      Result<ResidencyPin> p = manager_->AcquireForWrite(EntryOf(l, b));
      if (!p.ok())
        return p.status().WithContext("kv: import of block " + std::to_string(b) + " layer " + std::to_string(l));
      std::memcpy(p->mutable_data(), in, n);
    }
    if (summaries_.enabled())
      for (int32_t o = 0; o < format_.block_size; ++o)
        SummarizeKeys(l, b, o, in);
  }
  return Status::Ok();
}

PagedKvLayer PagedKvStore::View() const {
  PagedKvLayer v;
  v.k_pos_bytes = k_row_bytes_;
  v.v_pos_bytes = v_row_bytes_;
  v.k_head_stride = format_.block_size * k_row_bytes_;
  v.v_head_stride = format_.block_size * v_row_bytes_;
  v.v_offset = n_head_kv_ * v.k_head_stride;
  v.k_type = format_.k_type;
  v.v_type = format_.v_type;
  v.k_transposed = KeysTransposed(format_.k_type);
  v.block_size = format_.block_size;
  return v;
}

PagedKvLayer PagedKvStore::Layer(int64_t layer) const {
  PagedKvLayer v = View();
  v.blocks = manager_ ? table_.data() : table_.data() + static_cast<size_t>(layer) * n_blocks_;
  if (summaries_.has_sums()) v.block_sums = summaries_.LayerSums(layer);
  return v;
}

}  // namespace tierlm::kv
