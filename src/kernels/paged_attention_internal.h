// Per-path pieces of PagedAttention (paged_attention.cpp dispatches).
#pragma once

#include <cstdint>

#include "format/ggml_type.h"
#include "kernels/paged_attention.h"
#include "kv/paged_kv_store.h"

namespace tierlm {

// Rows p < n of one head (row p at rows + p * row_bytes) as f32 into dst[n][hd]. False
// (nothing done) for types or sizes it has no code for. Only callable with AVX-512.
bool DecodeHeadRowsAvx512(GgmlType type, const uint8_t* rows, int64_t row_bytes, int64_t n, int64_t hd, float* dst);

// Keys lo..lo+n of one head of a block stored transposed (PagedKvLayer::k_transposed: f16
// or bf16 element (p, d) at head + (d * block_size + p) * 2) into Kt as
// TransposeKeysAvx512 gives them: keys c..c+15 at Kt + c * hd, vector d = dimension d of
// those keys, zeros past n. False (nothing done) for other types or sizes. Only callable
// with AVX-512.
bool DecodeKeysTAvx512(GgmlType type, const uint8_t* head, int64_t block_size, int64_t lo, int64_t n, int64_t hd,
                       float* Kt);

// Folds keys K[0..n) and values V[0..n) (f32, [n][hd]), n <= 16, into the running softmax
// states of G heads: state h at states + h * state_stride is {max, sum, hd accumulated
// values}; q holds the G heads' query rows; every score gets `offset` added (0: none). False
// (nothing done) for unsupported head sizes. Only callable with AVX-512.
bool PagedChunkAvx512(const float* q, int64_t G, int64_t hd, float scale, const float* K, const float* V, int64_t n,
                      float* states, int64_t state_stride, float offset = 0.0f);

// The same with the keys transposed (TransposeKeysAvx512): Kt holds hd vectors of 16
// floats, vector d = dimension d of keys 0..15, zero past n. While it computes it
// prefetches (to L1) the cache lines pf[0..n_pf), spread over its loops: the next step's
// keys and values, which a core without the prefetches would only ask for after this
// step's arithmetic (on an Ice Lake Xeon reading scattered 2 KiB rows from DRAM, a burst of
// prefetches waits on the line-fill buffers as long as the demand reads would).
bool PagedChunkTAvx512(const float* q, int64_t G, int64_t hd, float scale, const float* Kt, const float* V, int64_t n,
                       float* states, int64_t state_stride, float offset = 0.0f, const char* const* pf = nullptr,
                       int64_t n_pf = 0);

// PagedChunkTAvx512 over 16 < n <= 32 keys as one softmax step (one maximum, rescale and
// sum for all of them): the second chunk's transposed keys at Kt + 16 hd, its values at
// V + 16 hd. False (nothing done) outside that range or head size.
bool PagedChunkT2Avx512(const float* q, int64_t G, int64_t hd, float scale, const float* Kt, const float* V, int64_t n,
                        float* states, int64_t state_stride, float offset = 0.0f, const char* const* pf = nullptr,
                        int64_t n_pf = 0);

// Keys K[0..n) ([n][hd] f32, n <= 16, hd a multiple of 16) into Kt (hd x 16 floats), keys
// past n as zeros.
void TransposeKeysAvx512(const float* K, int64_t n, int64_t hd, float* Kt);

// y[i] = the fold kernel's exp (Exp512) of x[i], i < n: for tests. Only callable with AVX-512.
void ExpRowAvx512(const float* x, int64_t n, float* y);

// Room for the cache lines prefetched during one fold step (past it, the demand reads).
inline constexpr int64_t kPagedMaxStepLines = 256;

// The cache lines (64-byte aligned addresses, in order) of KV head g's keys and values in the
// blocks that the fold step after the current one reads, from block bi on: bi and, where
// 16-position blocks go two to a step, bi + 1; those below k1, not skipped and pinned. Into
// lines (room for kPagedMaxStepLines, the rest left out); returns how many. PagedAttention
// hands them to the fold kernel of the current step, which prefetches them spread over its
// loops.
int64_t PagedNextStepLines(const kv::PagedKvLayer& kv, const PagedQuery& row, int64_t bi, int64_t k1, int64_t g,
                           const char** lines);

inline bool PagedChunkAvx512Supports(int64_t hd) {
  return hd == 32 || hd == 64 || hd == 96 || hd == 128 || hd == 256;
}

}  // namespace tierlm
