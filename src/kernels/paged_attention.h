// Causal attention over a paged KV cache: each query row reads its own sequence's blocks.
//
// Online softmax (flash-decoding): keys are taken one cache block at a time (on AVX-512,
// steps of up to 32 keys: two 16-position blocks), keeping a running maximum, sum and
// weighted value accumulator, so no score row is ever longer than a step and a block may be in any KV type (f32, f16, bf16, q8_0, q4_0: decoded one head
// at a time). A row's keys are cut into fixed spans of kPagedSplitKeys positions, each
// computed on its own and merged in order; work units take (row, KV head, span) states,
// several heads of a span or a tile's rows together, so one long sequence still uses every
// thread.
//
// Batch invariance: a row's result depends only on its query, its keys and values and its
// key count: never on the other rows, the thread count or how the prompt was chunked (the
// spans and the merge order are fixed by the position alone).
//
// The seam for sparse attention: a row may name blocks to skip (`skip`), for all its KV
// heads or for each KV head on its own (skip_heads), which then count as if they held no
// keys; a skipped block's bytes are never read (it need not be resident).
#pragma once

#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "kernels/attention.h"
#include "kv/paged_kv_store.h"

namespace tierlm {

// Positions per independently computed span (a multiple of every block size used).
inline constexpr int64_t kPagedSplitKeys = 256;

struct PagedQuery {
  const int32_t* blocks = nullptr;  // the sequence's block table
  int64_t n_keys = 0;               // attends to positions [0, n_keys)
  const uint8_t* skip = nullptr;    // nonzero = skip; may be null
  // 0: skip[b] for block b of the table, every KV head; n_head_kv: skip[b * n_head_kv + g]
  // for KV head g.
  int32_t skip_heads = 0;
  // A skipped block wholly below n_keys counts as one key, the mean of its keys, with the
  // mean of its values and the weight of its key count (score + ln n), when the layer
  // keeps block sums (PagedKvLayer::block_sums): an estimate of what it would add, from
  // memory, without its bytes. Off: a skipped block adds nothing.
  bool mean_skipped = false;
  bool Skips(int64_t b, int64_t g) const { return skip && skip[skip_heads ? b * skip_heads + g : b]; }
};

// q, out: one row per query, [n_head * head_dim] each (row r at r * n_head * head_dim).
// Every query needs n_keys >= 1 unskipped keys; a row whose keys are all skipped gets zeros.
void PagedAttention(const AttentionShape& s, const kv::PagedKvLayer& kv, std::span<const PagedQuery> rows,
                    const float* q, float* out, ThreadPool* pool);

}  // namespace tierlm
