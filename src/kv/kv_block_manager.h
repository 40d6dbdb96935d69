// KvBlockManager: the bookkeeping of a paged KV cache, apart from its bytes (vLLM's block
// pool and block tables, llama.cpp's KV cells).
//
// The cache is n_blocks blocks of block_size token positions each. Every sequence has a
// block table: its logical block i holds its positions [i * block_size, (i + 1) * block_size).
// Blocks are reference counted, so sequences can share a prefix (Fork) and copy on write:
// before a sequence appends into a partly filled block that another sequence also holds, it
// gets a private copy, and the caller copies the bytes (Reserve's `copies`). Free blocks are
// kept on a free list (a stack: the most recently freed block is reused first, and block 0
// is handed out first from a new manager).
//
// A block that is full gets a chained content hash: XXH3-64 of (the previous block's hash,
// or 0 for a sequence's first block; the identity of the model and KV format; the block
// size; the block's token ids), all little-endian (BlockHash). Only token ids and the
// identity go in: no pointer, seed or address, so the hash is the same in every process,
// and equal prefixes have equal hashes. The prefix cache keys on it.
//
// Blocks outlive their sequences as a prefix cache in memory (vLLM's automatic prefix
// caching): once a full block's keys and values are computed (MarkComputed), its hash maps
// to it; when the last sequence holding it lets go, it is not freed but kept, reusable and
// evictable, in least-recently-released order. A new sequence whose prompt starts with the
// same blocks takes them by reference (AttachCached) instead of recomputing them. Such
// blocks count as free: a block is handed out from the free list first, then by evicting
// the least recently released cached block (its hash forgotten, its bytes discarded).
//
// Eviction (kv/kv_evictor.h) drops a sequence's old blocks for good: Evict turns an entry
// of its block table into a hole (kHole) and releases the block, while the positions after
// it keep their places (RoPE stays at the original positions; attention skips holes). A
// block computed exactly before the sequence's first eviction keeps its hash and may stay
// cached for other sequences; blocks filled after it get none (their keys and values
// depend on what was evicted, so no exact run could reuse them).
//
// Admission speaks the residency manager's vocabulary (tiers/admit.h): Reserve answers Ok
// (the blocks are now the sequence's), Later (not enough free blocks now; they free as other
// sequences finish) or Impossible (the sequence would need more blocks than the cache has),
// so a scheduler can wait or preempt instead of failing.
//
// Plain data: not thread-safe; one scheduler owns it.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/status.h"
#include "tiers/admit.h"

namespace tierlm::kv {

using SeqId = int32_t;
using BlockId = int32_t;

// A block-table entry whose block was evicted.
inline constexpr BlockId kHole = -1;

// A copy the caller must make before writing: every layer's keys and values of block
// `from` into block `to` (positions [0, n_used)).
struct BlockCopy {
  BlockId from;
  BlockId to;
  int32_t n_used;
};

// Where position `pos` of a sequence lives.
struct KvSlot {
  BlockId block;
  int32_t offset;  // position within the block
};

class KvBlockManager {
 public:
  // identity: a hash of the model and the KV format (types, block size), folded into every
  // block hash so that caches of different models or formats never match.
  KvBlockManager(int32_t block_size, int32_t n_blocks, uint64_t identity);

  int32_t block_size() const { return block_size_; }
  int32_t n_blocks() const { return static_cast<int32_t>(ref_.size()); }
  // Blocks a Reserve can take: the free list and the cached blocks no sequence holds.
  int32_t n_free() const { return static_cast<int32_t>(free_.size()) + n_cached_; }
  // Of those, cached blocks (reusable by hash) no sequence holds.
  int32_t n_cached() const { return n_cached_; }
  uint64_t identity() const { return identity_; }

  bool HasSequence(SeqId seq) const { return seqs_.count(seq) != 0; }
  // Positions the sequence holds (appended tokens).
  int64_t Length(SeqId seq) const;
  // Positions the sequence can take before it needs more blocks (reserved capacity).
  int64_t Capacity(SeqId seq) const;
  // The blocks of the sequence, in order (empty for an unknown sequence); evicted ones are
  // kHole.
  std::span<const BlockId> BlockTable(SeqId seq) const;
  // Blocks the sequence holds (its table less the holes).
  int64_t LiveBlocks(SeqId seq) const;
  // Whether the sequence ever evicted (its table may hold holes).
  bool Evicted(SeqId seq) const;

  // Starts an empty sequence whose first block chains from `root` instead of 0: blocks of
  // different roots never share a hash (a tenant's cache_salt). InvalidArgument if `seq`
  // exists already.
  Status Open(SeqId seq, uint64_t root);

  // Makes room for n_new more positions of `seq` (a new sequence is created on kOk):
  // allocates the blocks it lacks and, when its last block is partly filled and shared,
  // replaces it by a private copy, appending to `copies` what to copy. Nothing changes
  // unless the answer is kOk.
  Admit Reserve(SeqId seq, int64_t n_new, std::vector<BlockCopy>* copies);
  // Blocks Reserve would need now (new blocks, plus one for a copy on write).
  int64_t BlocksNeeded(SeqId seq, int64_t n_new) const;

  // Records the token ids of the next positions of `seq` (they must have been reserved),
  // and hashes each block that becomes full.
  Status Append(SeqId seq, std::span<const int32_t> tokens);

  // Drops the last positions of `seq` down to `length` (an undone draft, a rejected
  // sample): blocks past the end return to the free list when no one else holds them, and a
  // block that is no longer full loses its hash. Reserved capacity past length is released.
  // InvalidArgument when length ends inside an evicted block (its earlier positions are gone).
  Status Truncate(SeqId seq, int64_t length);

  // Evicts logical block `index` of `seq`: a full block (every position of it appended)
  // that is not a hole. Its table entry becomes kHole and the block is released (to the
  // free list, or cached when computed before the first eviction). From the first
  // eviction on, blocks the sequence fills get no hash. InvalidArgument naming the
  // sequence and block otherwise.
  Status Evict(SeqId seq, int64_t index);

  // `child` (new) shares every block of `parent`: the same positions, no bytes copied.
  Status Fork(SeqId parent, SeqId child);

  // Releases the sequence's blocks: those no one else holds return to the free list, or,
  // when computed and full, stay cached (see the class comment).
  void Free(SeqId seq);

  // The keys and values of positions [0, n) of `seq` are computed: each full block among
  // them becomes reusable by its hash (unless another block already holds that hash).
  void MarkComputed(SeqId seq, int64_t n);
  // Gives `seq` (new, or opened and still empty; created with `root` when new) the cached
  // blocks of the longest prefix of the chain `hashes` (ChainHashes with the same root), by
  // reference. Returns how many blocks it took (0 for a sequence that is not empty).
  int64_t AttachCached(SeqId seq, std::span<const uint64_t> hashes, uint64_t root);
  // The block whose computed contents have this hash, or -1.
  BlockId FindCached(uint64_t hash) const;
  // Forgets every cached block no sequence holds: they return to the free list.
  void DropCached();
  // The chained hashes of the full blocks of `tokens`, chained from `root`.
  std::vector<uint64_t> ChainHashes(std::span<const int32_t> tokens, uint64_t root) const;

  // Blocks that returned to the free list since the last call, in order (their bytes are
  // no longer needed: the store discards them).
  std::vector<BlockId> TakeReleased() { return std::exchange(released_, {}); }

  KvSlot Slot(SeqId seq, int64_t pos) const;
  int32_t RefCount(BlockId b) const { return ref_[static_cast<size_t>(b)]; }
  // The chained hash of a full block; 0 while it is not full.
  uint64_t BlockHash(BlockId b) const { return hash_[static_cast<size_t>(b)]; }
  // Token ids held by a block (block_size entries; unfilled ones are -1).
  std::span<const int32_t> BlockTokens(BlockId b) const {
    return {tokens_.data() + static_cast<size_t>(b) * block_size_, static_cast<size_t>(block_size_)};
  }

  // The chain step, exposed for tests and the prefix cache.
  static uint64_t ChainHash(uint64_t prev, uint64_t identity, std::span<const int32_t> tokens);

 private:
  struct Sequence {
    std::vector<BlockId> blocks;
    int64_t length = 0;
    uint64_t root = 0;
    int64_t holes = 0;
    bool evicted = false;
  };
  BlockId Pop();
  void Release(BlockId b);
  void HashIfFull(const Sequence& s, size_t index);
  void Forget(BlockId b);  // the block's tokens and hash are gone; it is reusable by no hash
  void Unregister(BlockId b);
  void LruPush(BlockId b);
  void LruRemove(BlockId b);

  int32_t block_size_;
  uint64_t identity_;
  std::vector<int32_t> ref_;      // per block
  std::vector<uint64_t> hash_;    // per block, 0 unless full
  std::vector<int32_t> tokens_;   // per block, block_size ids
  std::vector<BlockId> free_;     // stack: back() is handed out next
  std::vector<BlockId> released_;  // freed since TakeReleased()
  // The prefix cache in memory.
  std::unordered_map<uint64_t, BlockId> cached_;  // hash -> computed full block
  std::vector<uint8_t> registered_;               // per block: in cached_
  std::vector<BlockId> lru_prev_, lru_next_;      // per block: the cached blocks no one holds
  BlockId lru_head_ = -1, lru_tail_ = -1;          // head: released longest ago, evicted first
  int32_t n_cached_ = 0;
  std::unordered_map<SeqId, Sequence> seqs_;
};

}  // namespace tierlm::kv
