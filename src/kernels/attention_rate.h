// How fast this machine's paged decode attention runs: the yardstick `plan` sets beside the
// DRAM bandwidth. At a deep context a decode step's attention is two dot products per query
// head and key (scores, then weighted values) over keys and values read from DRAM, and on a
// few cores it can take longer than reading every weight once.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kv/paged_kv_store.h"

namespace tierlm {

// FLOPs of one decode step's attention for one layer at `keys` positions: 4 per query-head
// dimension and key (a multiply and an add for the score, the same for the value).
inline double DecodeAttentionFlops(const AttentionShape& s, int64_t keys) {
  return 4.0 * static_cast<double>(s.n_head) * static_cast<double>(s.head_dim) * static_cast<double>(keys);
}

// Bytes of KV the measurement cycles through (as many layers of `keys` positions as pass
// it, at most 64): more than these machines' caches hold.
inline constexpr int64_t kRateBytes = int64_t{128} << 20;

// FLOP/s (DecodeAttentionFlops) of PagedAttention for one sequence of `keys` positions of
// shape `s` in KV format `f`: random keys and values on shuffled blocks, each call on the
// next of layers that together pass kRateBytes, so the rate includes reading the keys and
// values from DRAM, as decode at depth does (the kernel overlaps those reads with its
// arithmetic). The best of five windows of repeated calls on `pool`, about `seconds` in
// all.
// Errors: the KV format does not suit the shape (kv::CheckKvType), keys < 1.
Result<double> MeasurePagedDecodeRate(const AttentionShape& s, const kv::KvFormat& f, int64_t keys, ThreadPool* pool,
                                      double seconds = 0.2);

}  // namespace tierlm
