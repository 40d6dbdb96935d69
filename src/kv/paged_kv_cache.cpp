#include "kv/paged_kv_cache.h"

#include <xxhash.h>

#include <string>

namespace tierlm::kv {

uint64_t KvIdentity(uint64_t model_identity, const KvFormat& f) {
  const uint64_t words[5] = {model_identity, static_cast<uint64_t>(f.k_type), static_cast<uint64_t>(f.v_type),
                             static_cast<uint64_t>(f.block_size), kKvFormatVersion};
  uint8_t bytes[40];
  for (int w = 0; w < 5; ++w)
    for (int i = 0; i < 8; ++i) bytes[w * 8 + i] = static_cast<uint8_t>(words[w] >> (8 * i));
  return XXH3_64bits(bytes, sizeof bytes);
}

Result<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const PagedKvOptions& o) {
  Result<PagedKvStore> made =
      o.tier.env ? PagedKvStore::CreateTiered(o.n_layer, o.n_head_kv, o.head_dim, o.format, o.n_blocks, o.tier)
                 : PagedKvStore::Create(o.n_layer, o.n_head_kv, o.head_dim, o.format, o.n_blocks);
  TIERLM_ASSIGN_OR_RETURN(PagedKvStore store, std::move(made));
  KvBlockManager blocks(o.format.block_size, o.n_blocks, KvIdentity(o.identity, o.format));
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(std::move(blocks), std::move(store)));
}

void PagedKvCache::DiscardReleased() {
  for (BlockId b : blocks_.TakeReleased()) store_.Discard(b);
}

Result<Admit> PagedKvCache::Reserve(SeqId seq, int64_t n_new) {
  std::vector<BlockCopy> copies;
  const Admit a = blocks_.Reserve(seq, n_new, &copies);
  DiscardReleased();
  for (const BlockCopy& c : copies) {
    const Status st = store_.CopyBlock(c.from, c.to, c.n_used);
    if (!st.ok()) return st.WithContext("kv: sequence " + std::to_string(seq) + ": copy on write");
  }
  return a;
}

Status PagedKvCache::AddTokens(SeqId seq, std::span<const int32_t> tokens) {
  TIERLM_ASSIGN_OR_RETURN(const Admit a, Reserve(seq, static_cast<int64_t>(tokens.size())));
  if (a != Admit::kOk)
    return Status::ResourceExhausted("kv: sequence " + std::to_string(seq) + ": no room for " +
                                     std::to_string(tokens.size()) + " more positions (" + AdmitName(a) + ": " +
                                     std::to_string(blocks_.n_free()) + " of " + std::to_string(blocks_.n_blocks()) +
                                     " blocks free)");
  return blocks_.Append(seq, tokens);
}

Status PagedKvCache::Fork(SeqId parent, SeqId child) {
  TIERLM_RETURN_IF_ERROR(blocks_.Fork(parent, child));
  computed_[child] = std::min(Computed(parent), blocks_.Length(child));
  return Status::Ok();
}

Status PagedKvCache::Truncate(SeqId seq, int64_t length) {
  const Status st = blocks_.Truncate(seq, length);
  DiscardReleased();
  TIERLM_RETURN_IF_ERROR(st);
  if (Computed(seq) > length) computed_[seq] = length;
  return Status::Ok();
}

void PagedKvCache::Free(SeqId seq) {
  blocks_.Free(seq);
  DiscardReleased();
  computed_.erase(seq);
}

Status PagedKvCache::Evict(SeqId seq, int64_t index) {
  const Status st = blocks_.Evict(seq, index);
  DiscardReleased();
  return st;
}

void PagedKvCache::SetComputed(SeqId seq, int64_t n) {
  computed_[seq] = n;
  blocks_.MarkComputed(seq, n);
}

int64_t PagedKvCache::Computed(SeqId seq) const {
  auto it = computed_.find(seq);
  return it == computed_.end() ? 0 : it->second;
}

}  // namespace tierlm::kv
