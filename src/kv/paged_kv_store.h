// PagedKvStore: the bytes of a paged KV cache (the bookkeeping is KvBlockManager's).
//
// n_blocks blocks of block_size positions, for every layer, keys and values each in their
// own type (-ctk / -ctv: f32, f16, bf16, q8_0, q4_0). A position's row is n_head_kv heads
// of head_dim values, each head encoded on its own (so a quantized head never shares a
// block of 32 with its neighbour, and attention can decode one head). The keys of one
// (layer, block) are block_size rows (f16 / bf16 keys transposed, see PagedKvLayer), then
// its values: one contiguous run of bytes, the unit a tier moves.
//
// Two homes for the bytes:
//   in memory (Create): one allocation, layer-major then block; every block always there.
//   tiered (CreateTiered): every (layer, block) is a writable entry (class kv, with its
//     layer and block as attributes) of a ResidencyManager of its own budget (the KV share
//     of --mem-budget), homed in a private spill file on disk (O_DIRECT, io_uring). Blocks
//     are pinned a layer at a time (PinLayer: the blocks a forward pass reads, and those it
//     writes), the next layer's are read ahead (PrefetchLayer), and the coldest leave for
//     the spill file under an MRU policy (a decode step sweeps every block in the same
//     order: the block used last is needed again last). Freed blocks are discarded: never
//     written back, never read again.
// Either way, Layer(l) gives attention a table of block addresses, so the kernels do not
// know where the bytes live.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_memory.h"
#include "core/status.h"
#include "format/ggml_type.h"
#include "io/storage_env.h"
#include "kv/kv_block_manager.h"
#include "kv/kv_block_summaries.h"
#include "tiers/residency_manager.h"

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
  uint8_t* const* blocks = nullptr;  // per block id: its bytes in this layer (null: not pinned)
  // A block holds its keys, then its values (from v_offset), each head-major: KV head g's
  // row at position p at g * head_stride + p * pos_bytes, so that one head's rows of a block
  // are contiguous (decode reads one head at a time: 19-25% faster than position-major on
  // an Ice Lake Xeon, docs/BENCHMARKS.md).
  int64_t v_offset = 0;
  int64_t k_pos_bytes = 0, v_pos_bytes = 0;      // one head at one position (its row)
  int64_t k_head_stride = 0, v_head_stride = 0;  // between KV heads: block_size rows
  // f16 and bf16 keys are transposed within a head's rows: dimension d of position p at
  // g * k_head_stride + (d * block_size + p) * 2, so that dimension d of 16 positions is 32
  // contiguous bytes, one conversion from the lane-per-key vector attention scores with
  // (no transposition per read). Values, and keys of other types, are rows.
  bool k_transposed = false;
  GgmlType k_type = GgmlType::kF32, v_type = GgmlType::kF32;
  int32_t block_size = 0;
  // Per block id: n_head_kv * [key sums hd, value sums hd] of its positions (null: none
  // kept), for rows that fold skipped blocks in as their means (PagedQuery::mean_skipped).
  const float* block_sums = nullptr;
};

// Whether keys of `type` are stored transposed (PagedKvLayer::k_transposed).
inline bool KeysTransposed(GgmlType type) { return type == GgmlType::kF16 || type == GgmlType::kBF16; }

// Position p's key of KV head g in `block` (one layer's bytes of a block) as hd floats,
// whatever the layout.
void DequantizeKey(const PagedKvLayer& L, const uint8_t* block, int64_t g, int64_t p, int64_t hd, float* dst);

// Where a tiered store keeps its bytes.
struct KvTierOptions {
  io::StorageEnv* env = nullptr;  // creates the spill file; not owned, outlives the store
  std::string spill_dir;          // directory of the spill file (a disk, not tmpfs)
  uint64_t budget_bytes = 0;      // memory for resident blocks, bytes
  io::Clock* clock = nullptr;     // default: the system clock
};

// A block a forward pass could not have: which, and why (an I/O error, a lost write).
struct BlockFailure {
  BlockId block;
  Status status;
};

// What a tiered store holds where.
struct KvTierStats {
  bool tiered = false;
  uint64_t budget_bytes = 0;    // memory for resident blocks
  uint64_t resident_bytes = 0;  // blocks in memory now
  uint64_t spilled_bytes = 0;   // bytes written to the spill file so far
  uint64_t read_bytes = 0;      // bytes read back from it
  uint64_t spill_capacity_bytes = 0;
  ResidencyStats residency;
  io::FileStats spill_file;
};

class PagedKvStore {
 public:
  static Result<PagedKvStore> Create(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format,
                                     int32_t n_blocks);
  // Errors: those of Create; the spill file's creation (naming the directory);
  // kOutOfRange if the budget cannot hold two blocks of every layer.
  static Result<PagedKvStore> CreateTiered(int64_t n_layer, int64_t n_head_kv, int64_t head_dim,
                                           const KvFormat& format, int32_t n_blocks, const KvTierOptions& tier);
  // Bytes of one block for all layers, keys and values.
  static uint64_t BlockBytes(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format);
  // Bytes one (layer, block) takes in a tiered store's memory and spill file (4 KiB pages).
  static uint64_t TieredSlotBytes(int64_t n_head_kv, int64_t head_dim, const KvFormat& format);

  const KvFormat& format() const { return format_; }
  int32_t n_blocks() const { return n_blocks_; }
  bool tiered() const { return manager_ != nullptr; }
  // Memory the store holds for blocks: the whole cache, or a tiered store's budget.
  uint64_t bytes() const;

  // Pins the blocks one layer of a forward pass reads (`read`) and writes (`write`), so
  // that Layer(layer) addresses them and Write() may change the written ones. A block that
  // cannot be had goes to *failed and stays unaddressed; the rest are pinned. Only one layer
  // is pinned at a time: UnpinLayer() before the next. In memory: nothing to do.
  void PinLayer(int64_t layer, std::span<const BlockId> read, std::span<const BlockId> write,
                std::vector<BlockFailure>* failed);
  void UnpinLayer();
  // Starts reading a layer's blocks from the spill file ahead of PinLayer (tiered only).
  void PrefetchLayer(int64_t layer, std::span<const BlockId> blocks);

  // Encodes one position's keys and values (n_head_kv * head_dim floats each).
  // REQUIRES: tiered: the block pinned for writing in this layer.
  void Write(int64_t layer, KvSlot slot, const float* k, const float* v);
  // Every layer's first n_used positions of block `from` into block `to`. Errors (tiered):
  // a failure to read `from` or to have `to`, naming the block and layer.
  Status CopyBlock(BlockId from, BlockId to, int32_t n_used);
  // Bytes of one block in all layers, as ExportBlock writes them: layer 0's keys and values,
  // then layer 1's, ...
  uint64_t block_payload_bytes() const { return static_cast<uint64_t>(n_layer_ * layer_block_bytes_); }
  // Copies every layer's bytes of block b out (block_payload_bytes()) or in. Errors
  // (tiered): the block cannot be read or had, naming it and the layer. A failed import
  // leaves the block's contents undefined.
  Status ExportBlock(BlockId b, uint8_t* out);
  Status ImportBlock(BlockId b, const uint8_t* in);
  // The block left the cache (no sequence holds it): its bytes are dropped unwritten.
  void Discard(BlockId b);
  PagedKvLayer Layer(int64_t layer) const;
  KvTierStats TierStats() const;

  // Keeps per-block key bounds (kv_block_summaries.h) from now on, for sparse retrieval;
  // blocks written before have none (call before the first Write).
  // with_sums: also the sums of each block's keys and values (KvBlockSummaries::EnableSums).
  void EnableSummaries(bool with_sums = false);
  const KvBlockSummaries& summaries() const { return summaries_; }

 private:
  PagedKvStore() = default;
  // The sizes of a store of this shape, no bytes yet.
  static PagedKvStore Shaped(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvFormat& format,
                             int32_t n_blocks);
  // Widens block b's key bounds in `layer` by position `offset`'s stored keys (decoded from
  // their type) of the block's bytes `block`; with sums, its values too.
  void SummarizeKeys(int64_t layer, BlockId b, int32_t offset, const uint8_t* block);
  // The block layout (PagedKvLayer's strides and types), no blocks.
  PagedKvLayer View() const;
  EntryId EntryOf(int64_t layer, BlockId b) const {
    return first_entry_ + static_cast<EntryId>(layer * n_blocks_ + b);
  }
  int64_t n_layer_ = 0, n_head_kv_ = 0, head_dim_ = 0;
  int32_t n_blocks_ = 0;
  KvFormat format_;
  int64_t k_row_bytes_ = 0, v_row_bytes_ = 0;  // one head's row
  int64_t layer_block_bytes_ = 0;
  MappedMemory data_;                  // in memory: every block
  uint64_t bytes_ = 0;                 // in memory: the blocks' bytes
  std::vector<uint8_t*> table_;        // in memory: [layer][block] addresses; tiered: [block] of the pinned layer
  // Tiered.
  std::unique_ptr<io::SpillFile> spill_;
  std::unique_ptr<ResidencyManager> manager_;
  EntryId first_entry_ = 0;
  int64_t pinned_layer_ = -1;
  std::vector<ResidencyPin> pins_;     // of the pinned layer (destroyed before manager_)
  KvBlockSummaries summaries_;         // empty unless enabled
  std::vector<float> key_row_, value_row_;  // one decoded row, for the summaries
};

}  // namespace tierlm::kv
