// Where attention goes: the share of each query's attention that falls on each KV block.
//
// Eviction policies score blocks by it (kv/eviction_policy.h). Computed apart from the
// attention output, in plain loops (keys decoded to f32, scores and exponentials in f32,
// the normalizing and block sums in f64): it reads every unskipped key once more, which is why
// only policies that need it ask for it.
#pragma once

#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kernels/paged_attention.h"
#include "kv/paged_kv_store.h"

namespace tierlm {

// For each row r with active[r] != 0: adds to mass[r * stride + b], for every block b of
// its table that it reads, the softmax probability its query heads put on the keys of
// that block (rows' skip masks honoured; a row's n_keys bounds it), summed over the
// n_head query heads: each active row adds n_head in all. stride >= its table's blocks.
// by_kv_head: each KV head's query heads apart, at mass[(r * n_head_kv + g) * stride + b].
void AddAttentionBlockMass(const AttentionShape& s, const kv::PagedKvLayer& kv, std::span<const PagedQuery> rows,
                           const uint8_t* active, const float* q, double* mass, int64_t stride, ThreadPool* pool,
                           bool by_kv_head = false);

}  // namespace tierlm
