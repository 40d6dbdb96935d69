#include "kv/kv_cache.h"

#include <new>

namespace tierlm {

Status KvCache::CheckSize(int64_t n_layer, int64_t n_ctx, int64_t kv_dim) {
  const double bytes = Bytes(n_layer, n_ctx, kv_dim);
  if (bytes > static_cast<double>(kMaxBytes))
    return Status::ResourceExhausted("KV cache of " + std::to_string(static_cast<uint64_t>(bytes / (1 << 20))) +
                                     " MiB for a context of " + std::to_string(n_ctx) + " tokens is too large (at most " +
                                     std::to_string(kMaxBytes >> 30) + " GiB): lower the context size (-c)");
  return Status::Ok();
}

Result<KvCache> KvCache::Create(int64_t n_layer, int64_t n_ctx, int64_t kv_dim) {
  if (n_layer <= 0 || n_ctx <= 0 || kv_dim <= 0) return Status::InvalidArgument("KV cache dimensions must be positive");
  TIERLM_RETURN_IF_ERROR(CheckSize(n_layer, n_ctx, kv_dim));
  const double bytes = Bytes(n_layer, n_ctx, kv_dim);
  KvCache kv;
  kv.n_layer_ = n_layer;
  kv.n_ctx_ = n_ctx;
  kv.kv_dim_ = kv_dim;
  try {
    kv.data_.assign(static_cast<size_t>(2 * n_layer * n_ctx * kv_dim), 0.0f);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("cannot allocate the KV cache (" + std::to_string(static_cast<uint64_t>(bytes / (1 << 20))) +
                                     " MiB): lower the context size (-c)");
  }
  return kv;
}

}  // namespace tierlm
