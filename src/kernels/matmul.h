// Matrix products with quantized weights: the hot path of every forward pass.
//
// Weights are stored as ggml does: a 2-D tensor with ne = [n_in, n_out] is n_out rows,
// each row n_in elements of one GgmlType, rows back to back.
#pragma once

#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "format/ggml_type.h"

namespace tierlm {

// A read-only view of a weight matrix: n_out rows of n_in elements of `type`.
struct WeightMatrix {
  GgmlType type;
  const void* data;  // n_out * RowBytes(type, n_in) bytes
  int64_t n_in;
  int64_t n_out;
};

// Batch invariance: a token's output row never depends on the other tokens of the batch
// (how many, which, or how the rows are split between threads). Every kernel path computes
// each (row, token) dot product with one fixed sequence of f32 operations per weight type,
// whichever kernel runs it: the decode and small-batch kernels and the AVX-512 prefill
// panel kernels (BF16, Q8_0, Q4_0, Q4_K, Q6_K weights; batches of at least a kernel's
// prefill_min_tok tokens) share that order (matmul_avx512.cpp states it per type), and
// integer partial sums, exact in any order, are free to be grouped as each kernel likes.
// Results may differ between kernel paths (scalar, AVX2, AVX-512), not within one. This is
// always on: there is no switch (the former TIERLM_BATCH_INVARIANT / SetMatmulBatchInvariant
// kept every batch on the decode kernels at 2.5x the prefill time; with the shared order it
// costs nothing measurable except in BF16 prefill, whose panel kernel runs the decode
// tiles' 16 chains: measured in docs/BENCHMARKS.md, batch invariance section).

// y[t][o] = sum_i w[o][i] * x[t][i]  for t < n_tok, o < w.n_out.
//   x: [n_tok][w.n_in] f32, row stride x_stride floats (>= n_in)
//   y: [n_tok][w.n_out] f32, row stride y_stride floats (>= n_out)
// Activations may be rounded to the weight type's activation format (e.g. int8 blocks
// for quantized weights) as llama.cpp does. Uses pool's threads (nullptr: caller only).
// REQUIRES: w.n_in is a multiple of the type's block size; type supported.
void Matmul(const WeightMatrix& w, const float* x, int64_t x_stride, int64_t n_tok, float* y,
            int64_t y_stride, ThreadPool* pool);

// One product of a batch: y = w x for n_tok tokens (arguments as for Matmul).
struct MatmulJob {
  WeightMatrix w;
  const float* x;
  int64_t x_stride;
  int64_t n_tok;
  float* y;
  int64_t y_stride;
};

// Runs independent products as one parallel pass: one hand-off to the threads for all of
// them, instead of one per product (which dominates small decode products such as MoE
// experts), and one activation conversion per distinct input. Results equal Matmul's
// for each job. Jobs long enough for the prefill kernels run one by one.
// REQUIRES: outputs do not overlap each other or any input.
void MatmulBatch(std::span<const MatmulJob> jobs, ThreadPool* pool);

}  // namespace tierlm
