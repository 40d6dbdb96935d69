#include "kv/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tierlm {

double KvCache::Bytes(const KvShape& s, int64_t n_ctx, const kv::KvFormat& f) {
  const double blocks = std::ceil(static_cast<double>(std::max<int64_t>(n_ctx, 1)) / f.block_size);
  return blocks * static_cast<double>(kv::PagedKvStore::BlockBytes(s.n_layer, s.n_head_kv, s.head_dim, f));
}

Status KvCache::CheckSize(const KvShape& s, int64_t n_ctx, const kv::KvFormat& f) {
  const double bytes = Bytes(s, n_ctx, f);
  if (bytes > static_cast<double>(kMaxBytes))
    return Status::ResourceExhausted("KV cache of " + std::to_string(static_cast<uint64_t>(bytes / (1 << 20))) +
                                     " MiB for a context of " + std::to_string(n_ctx) + " tokens is too large (at most " +
                                     std::to_string(kMaxBytes >> 30) + " GiB): lower the context size (-c)");
  return Status::Ok();
}

Result<KvCache> KvCache::Create(const KvShape& s, int64_t n_ctx, const kv::KvFormat& f, const kv::KvTierOptions& tier,
                                uint64_t model_identity, int64_t kv_positions) {
  if (s.n_layer <= 0 || s.n_head_kv <= 0 || s.head_dim <= 0 || n_ctx <= 0 || f.block_size <= 0)
    return Status::InvalidArgument("KV cache dimensions must be positive");
  const int64_t held = kv_positions > 0 ? std::min(kv_positions, n_ctx) : n_ctx;
  TIERLM_RETURN_IF_ERROR(CheckSize(s, held, f));
  kv::PagedKvOptions o;
  o.n_layer = s.n_layer;
  o.n_head_kv = s.n_head_kv;
  o.head_dim = s.head_dim;
  o.format = f;
  o.n_blocks = static_cast<int32_t>((held + f.block_size - 1) / f.block_size);
  o.tier = tier;
  o.identity = model_identity;
  KvCache kv;
  kv.n_ctx_ = n_ctx;
  TIERLM_ASSIGN_OR_RETURN(kv.paged_, kv::PagedKvCache::Create(o));
  return kv;
}

void KvCache::set_n_past(int64_t n) {
  const int64_t length = paged_->blocks().Length(kSeq);
  if (n >= length) return;
  n = std::max<int64_t>(n, 0);
  // Inside an evicted block: from that block's start.
  if (!paged_->Truncate(kSeq, n).ok()) (void)paged_->Truncate(kSeq, n / format().block_size * format().block_size);
}

}  // namespace tierlm
