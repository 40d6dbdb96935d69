#include "kv/kv_block_manager.h"

#include "core/little_endian.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace tierlm::kv {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

KvBlockManager::KvBlockManager(int32_t block_size, int32_t n_blocks, uint64_t identity)
    : block_size_(std::max(1, block_size)), identity_(identity) {
  n_blocks = std::max(0, n_blocks);
  ref_.assign(static_cast<size_t>(n_blocks), 0);
  hash_.assign(static_cast<size_t>(n_blocks), 0);
  tokens_.assign(static_cast<size_t>(n_blocks) * block_size_, -1);
  registered_.assign(static_cast<size_t>(n_blocks), 0);
  lru_prev_.assign(static_cast<size_t>(n_blocks), -1);
  lru_next_.assign(static_cast<size_t>(n_blocks), -1);
  free_.reserve(static_cast<size_t>(n_blocks));
  for (BlockId b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

uint64_t KvBlockManager::ChainHash(uint64_t prev, uint64_t identity, std::span<const int32_t> tokens) {
  std::vector<uint8_t> bytes(20 + 4 * tokens.size());
  PutLe64(bytes.data(), prev);
  PutLe64(bytes.data() + 8, identity);
  PutLe32(bytes.data() + 16, static_cast<uint32_t>(tokens.size()));
  for (size_t i = 0; i < tokens.size(); ++i) PutLe32(bytes.data() + 20 + 4 * i, static_cast<uint32_t>(tokens[i]));
  const uint64_t h = XXH3_64bits(bytes.data(), bytes.size());
  return h != 0 ? h : 1;  // 0 means "not full"
}

int64_t KvBlockManager::Length(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.length;
}

int64_t KvBlockManager::Capacity(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.blocks.size()) * block_size_;
}

std::span<const BlockId> KvBlockManager::BlockTable(SeqId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return {};
  return it->second.blocks;
}

int64_t KvBlockManager::LiveBlocks(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.blocks.size()) - it->second.holes;
}

bool KvBlockManager::Evicted(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it != seqs_.end() && it->second.evicted;
}

Status KvBlockManager::Evict(SeqId seq, int64_t index) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return Status::NotFound("kv: eviction from unknown sequence " + std::to_string(seq));
  Sequence& s = it->second;
  if (index < 0 || (index + 1) * block_size_ > s.length)
    return Status::InvalidArgument("kv: sequence " + std::to_string(seq) + ": block " + std::to_string(index) +
                                   " is not a full block of its " + std::to_string(s.length) + " positions");
  BlockId& b = s.blocks[static_cast<size_t>(index)];
  if (b == kHole)
    return Status::InvalidArgument("kv: sequence " + std::to_string(seq) + ": block " + std::to_string(index) +
                                   " was evicted already");
  Release(b);
  b = kHole;
  ++s.holes;
  s.evicted = true;
  return Status::Ok();
}

int64_t KvBlockManager::BlocksNeeded(SeqId seq, int64_t n_new) const {
  auto it = seqs_.find(seq);
  const int64_t length = it == seqs_.end() ? 0 : it->second.length;
  const int64_t have = it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.blocks.size());
  int64_t need = std::max<int64_t>(0, CeilDiv(length + n_new, block_size_) - have);
  // Appending into a partly filled block someone else holds: it is copied first.
  if (n_new > 0 && length % block_size_ != 0) {
    const BlockId last = it->second.blocks[static_cast<size_t>(length / block_size_)];
    if (ref_[static_cast<size_t>(last)] > 1) ++need;
  }
  return need;
}

void KvBlockManager::LruPush(BlockId b) {
  const size_t i = static_cast<size_t>(b);
  lru_prev_[i] = lru_tail_;
  lru_next_[i] = -1;
  if (lru_tail_ >= 0) lru_next_[static_cast<size_t>(lru_tail_)] = b;
  else lru_head_ = b;
  lru_tail_ = b;
  ++n_cached_;
}

void KvBlockManager::LruRemove(BlockId b) {
  const size_t i = static_cast<size_t>(b);
  if (lru_prev_[i] >= 0) lru_next_[static_cast<size_t>(lru_prev_[i])] = lru_next_[i];
  else lru_head_ = lru_next_[i];
  if (lru_next_[i] >= 0) lru_prev_[static_cast<size_t>(lru_next_[i])] = lru_prev_[i];
  else lru_tail_ = lru_prev_[i];
  lru_prev_[i] = lru_next_[i] = -1;
  --n_cached_;
}

void KvBlockManager::Unregister(BlockId b) {
  const size_t i = static_cast<size_t>(b);
  if (!registered_[i]) return;
  auto it = cached_.find(hash_[i]);
  if (it != cached_.end() && it->second == b) cached_.erase(it);
  registered_[i] = 0;
}

void KvBlockManager::Forget(BlockId b) {
  Unregister(b);
  hash_[static_cast<size_t>(b)] = 0;
  std::fill_n(tokens_.begin() + static_cast<ptrdiff_t>(b) * block_size_, block_size_, -1);
}

BlockId KvBlockManager::Pop() {
  BlockId b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    // Evicts the cached block released longest ago: its bytes are stale from now on.
    b = lru_head_;
    LruRemove(b);
    Forget(b);
    released_.push_back(b);
  }
  ref_[static_cast<size_t>(b)] = 1;
  return b;
}

void KvBlockManager::Release(BlockId b) {
  int32_t& r = ref_[static_cast<size_t>(b)];
  if (--r > 0) return;
  if (registered_[static_cast<size_t>(b)]) {  // computed and full: stays, reusable by its hash
    LruPush(b);
    return;
  }
  Forget(b);
  free_.push_back(b);
  released_.push_back(b);
}

Status KvBlockManager::Open(SeqId seq, uint64_t root) {
  if (seqs_.count(seq)) return Status::InvalidArgument("kv: sequence " + std::to_string(seq) + " exists already");
  seqs_[seq].root = root;
  return Status::Ok();
}

void KvBlockManager::MarkComputed(SeqId seq, int64_t n) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  const Sequence& s = it->second;
  const size_t full = static_cast<size_t>(std::min(n, s.length) / block_size_);
  for (size_t i = full; i-- > 0;) {
    const BlockId b = s.blocks[i];
    if (b == kHole) continue;
    const size_t bi = static_cast<size_t>(b);
    if (registered_[bi]) break;  // and every block before it
    const uint64_t h = hash_[bi];
    if (h == 0) continue;
    if (cached_.emplace(h, b).second) registered_[bi] = 1;
  }
}

int64_t KvBlockManager::AttachCached(SeqId seq, std::span<const uint64_t> hashes, uint64_t root) {
  auto it = seqs_.find(seq);
  if (it != seqs_.end() && (it->second.length > 0 || !it->second.blocks.empty())) return 0;
  Sequence& s = seqs_[seq];
  if (it == seqs_.end()) s.root = root;
  int64_t n = 0;
  for (uint64_t h : hashes) {
    const BlockId b = FindCached(h);
    if (b < 0) break;
    if (ref_[static_cast<size_t>(b)]++ == 0) LruRemove(b);
    s.blocks.push_back(b);
    s.length += block_size_;
    ++n;
  }
  return n;
}

BlockId KvBlockManager::FindCached(uint64_t hash) const {
  auto it = cached_.find(hash);
  return it == cached_.end() ? -1 : it->second;
}

void KvBlockManager::DropCached() {
  while (lru_head_ >= 0) {
    const BlockId b = lru_head_;
    LruRemove(b);
    Forget(b);
    free_.push_back(b);
    released_.push_back(b);
  }
}

std::vector<uint64_t> KvBlockManager::ChainHashes(std::span<const int32_t> tokens, uint64_t root) const {
  std::vector<uint64_t> out;
  uint64_t prev = root;
  for (size_t i = 0; (i + 1) * static_cast<size_t>(block_size_) <= tokens.size(); ++i) {
    prev = ChainHash(prev, identity_, tokens.subspan(i * static_cast<size_t>(block_size_), static_cast<size_t>(block_size_)));
    out.push_back(prev);
  }
  return out;
}

Admit KvBlockManager::Reserve(SeqId seq, int64_t n_new, std::vector<BlockCopy>* copies) {
  if (n_new < 0) return Admit::kImpossible;
  const int64_t need = BlocksNeeded(seq, n_new);
  if (LiveBlocks(seq) + need > n_blocks()) return Admit::kImpossible;
  const int64_t length = Length(seq);
  if (need > n_free()) return Admit::kLater;
  Sequence& s = seqs_[seq];
  if (n_new > 0 && length % block_size_ != 0) {
    BlockId& last = s.blocks[static_cast<size_t>(length / block_size_)];
    if (ref_[static_cast<size_t>(last)] > 1) {
      const BlockId copy = Pop();
      std::copy_n(tokens_.begin() + static_cast<ptrdiff_t>(last) * block_size_, length % block_size_,
                  tokens_.begin() + static_cast<ptrdiff_t>(copy) * block_size_);
      copies->push_back({last, copy, static_cast<int32_t>(length % block_size_)});
      Release(last);
      last = copy;
    }
  }
  while (static_cast<int64_t>(s.blocks.size()) * block_size_ < length + n_new) s.blocks.push_back(Pop());
  return Admit::kOk;
}

void KvBlockManager::HashIfFull(const Sequence& s, size_t index) {
  const BlockId b = s.blocks[index];
  if (static_cast<int64_t>(index + 1) * block_size_ > s.length) return;
  if (s.evicted) return;  // its keys and values depend on evicted ones: never reusable
  const uint64_t prev = index == 0 ? s.root : hash_[static_cast<size_t>(s.blocks[index - 1])];
  hash_[static_cast<size_t>(b)] = ChainHash(prev, identity_, BlockTokens(b));
}

Status KvBlockManager::Append(SeqId seq, std::span<const int32_t> tokens) {
  auto it = seqs_.find(seq);
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return Status::Ok();
  if (it == seqs_.end() || it->second.length + n > Capacity(seq))
    return Status::Internal("kv: sequence " + std::to_string(seq) + ": " + std::to_string(n) +
                            " tokens appended past its reserved capacity " + std::to_string(Capacity(seq)));
  Sequence& s = it->second;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = s.length;
    const size_t index = static_cast<size_t>(pos / block_size_);
    const BlockId b = s.blocks[index];
    if (ref_[static_cast<size_t>(b)] > 1)
      return Status::Internal("kv: sequence " + std::to_string(seq) + " appends into shared block " +
                              std::to_string(b) + " (Reserve copies it first)");
    tokens_[static_cast<size_t>(b) * block_size_ + pos % block_size_] = tokens[static_cast<size_t>(i)];
    s.length = pos + 1;
    if (s.length % block_size_ == 0) HashIfFull(s, index);
  }
  return Status::Ok();
}

Status KvBlockManager::Truncate(SeqId seq, int64_t length) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return Status::NotFound("kv: no sequence " + std::to_string(seq));
  Sequence& s = it->second;
  if (length < 0 || length > s.length)
    return Status::OutOfRange("kv: sequence " + std::to_string(seq) + " has " + std::to_string(s.length) +
                              " positions, cannot truncate to " + std::to_string(length));
  const size_t keep = static_cast<size_t>(CeilDiv(length, block_size_));
  if (length % block_size_ != 0 && s.blocks[keep - 1] == kHole)
    return Status::InvalidArgument("kv: sequence " + std::to_string(seq) + ": position " + std::to_string(length - 1) +
                                   " was evicted (block " + std::to_string(keep - 1) +
                                   "): truncate to that block's start");
  while (s.blocks.size() > keep) {
    if (s.blocks.back() == kHole) --s.holes;
    else Release(s.blocks.back());
    s.blocks.pop_back();
  }
  if (length % block_size_ != 0 && s.blocks.back() != kHole) {
    const BlockId last = s.blocks.back();
    if (ref_[static_cast<size_t>(last)] == 1) {  // sole owner: forget the dropped tokens
      Unregister(last);
      hash_[static_cast<size_t>(last)] = 0;
      std::fill(tokens_.begin() + static_cast<ptrdiff_t>(last) * block_size_ + length % block_size_,
                tokens_.begin() + static_cast<ptrdiff_t>(last + 1) * block_size_, -1);
    }
  }
  s.length = length;
  return Status::Ok();
}

Status KvBlockManager::Fork(SeqId parent, SeqId child) {
  auto it = seqs_.find(parent);
  if (it == seqs_.end()) return Status::NotFound("kv: fork of unknown sequence " + std::to_string(parent));
  if (seqs_.count(child)) return Status::InvalidArgument("kv: fork into existing sequence " + std::to_string(child));
  Sequence copy;
  copy.length = it->second.length;
  copy.root = it->second.root;
  copy.evicted = it->second.evicted;
  // Shares the filled blocks only; reserved blocks past the parent's length stay its own.
  const size_t used = static_cast<size_t>(CeilDiv(copy.length, block_size_));
  copy.blocks.assign(it->second.blocks.begin(), it->second.blocks.begin() + static_cast<ptrdiff_t>(used));
  for (BlockId b : copy.blocks) {
    if (b == kHole) ++copy.holes;
    else ++ref_[static_cast<size_t>(b)];
  }
  seqs_.emplace(child, std::move(copy));
  return Status::Ok();
}

void KvBlockManager::Free(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  // Last block first, so that the stack hands the first block back first next time.
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b)
    if (*b != kHole) Release(*b);
  seqs_.erase(it);
}

KvSlot KvBlockManager::Slot(SeqId seq, int64_t pos) const {
  const auto& blocks = seqs_.at(seq).blocks;
  return {blocks[static_cast<size_t>(pos / block_size_)], static_cast<int32_t>(pos % block_size_)};
}

}  // namespace tierlm::kv
