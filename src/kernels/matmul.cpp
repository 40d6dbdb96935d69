#include "kernels/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "kernels/kernel_registry.h"

namespace tierlm {
namespace {

// Prefill cache blocking: each kernel call covers at most kRowBlock weight rows (about
// 74 KiB of Q4_0 at n_in = 2048, L2-resident) x kTokBlock tokens of activations.
constexpr int64_t kRowBlock = 64;
constexpr int64_t kTokBlock = 64;
// Rows per unit of work handed to a thread.
constexpr int64_t kChunkRows = 64;

// A growable 64-byte-aligned scratch buffer, one per calling thread.
struct ActBuffer {
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data;
  size_t capacity = 0;

  uint8_t* Reserve(size_t bytes) {
    if (bytes > capacity) {
      const size_t cap = (bytes + 4095) / 4096 * 4096;
      data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, cap)));
      if (!data) std::abort();
      capacity = cap;
    }
    return data.get();
  }
};

}  // namespace

void MatmulWithKernels(const KernelSet& kernels, const WeightMatrix& w, const float* x,
                       int64_t x_stride, int64_t n_tok, float* y, int64_t y_stride,
                       ThreadPool* pool) {
  const int kt = KernelTypeIndex(w.type);
  if (kt < 0 || n_tok <= 0 || w.n_out <= 0) {
    if (kt < 0) std::abort();
    return;
  }
  const KernelSet::Entry& entry = kernels.entries[kt];
  const bool batched = entry.prefill != nullptr && n_tok >= entry.prefill_min_tok;
  const ActFormat act_format = batched ? entry.prefill_act : entry.act;
  const ActLayout layout = GetActLayout(act_format, w.n_in);

  static thread_local ActBuffer act_buffer;
  uint8_t* act = act_buffer.Reserve(static_cast<size_t>(layout.row_bytes * n_tok));
  const int n_threads = pool ? pool->size() : 1;
  // Activations are converted once and shared by every thread.
  if (n_tok == 1 || n_threads == 1) {
    for (int64_t t = 0; t < n_tok; ++t)
      ConvertActivationRow(act_format, x + t * x_stride, w.n_in, act + t * layout.row_bytes);
  } else {
    pool->ParallelForDynamic(n_tok, 8, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        ConvertActivationRow(act_format, x + t * x_stride, w.n_in, act + t * layout.row_bytes);
    });
  }

  const int64_t w_row_bytes = RowBytes(w.type, w.n_in);
  const int64_t tile = batched ? entry.prefill_row_tile : entry.row_tile;
  // Rows are handed out in chunks from a shared counter (ParallelForDynamic), so a thread
  // the OS deschedules does not stall the matmul; chunks are large enough (kChunkRows)
  // that claiming one costs nothing next to computing it.
  // Small matrices (k/v projections) still get a few chunks per thread.
  const int64_t want = std::min<int64_t>(kChunkRows, w.n_out / (4 * n_threads));
  const int64_t chunk_rows = std::max<int64_t>(1, (want + tile - 1) / tile) * tile;
  auto rows = [&](int64_t row_begin, int64_t row_end) {
    GemmArgs args{};
    args.w_row_bytes = w_row_bytes;
    args.act_layout = layout;
    args.n_in = w.n_in;
    args.y_stride = y_stride;
    if (batched || n_tok == 1) {
      args.w = static_cast<const uint8_t*>(w.data) + row_begin * w_row_bytes;
      args.n_rows = row_end - row_begin;
      args.act = act;
      args.n_tok = n_tok;
      args.y = y + row_begin;
      (batched ? entry.prefill : entry.gemm)(args);
      return;
    }
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kRowBlock) {
      for (int64_t t0 = 0; t0 < n_tok; t0 += kTokBlock) {
        args.w = static_cast<const uint8_t*>(w.data) + r0 * w_row_bytes;
        args.n_rows = std::min(kRowBlock, row_end - r0);
        args.act = act + t0 * layout.row_bytes;
        args.n_tok = std::min(kTokBlock, n_tok - t0);
        args.y = y + t0 * y_stride + r0;
        entry.gemm(args);
      }
    }
  };
  if (pool == nullptr || n_threads == 1) {
    rows(0, w.n_out);
  } else {
    pool->ParallelForDynamic(w.n_out, chunk_rows, rows);
  }
}

void Matmul(const WeightMatrix& w, const float* x, int64_t x_stride, int64_t n_tok, float* y,
            int64_t y_stride, ThreadPool* pool) {
  MatmulWithKernels(KernelsFor(ActiveKernelPath()), w, x, x_stride, n_tok, y, y_stride, pool);
}

}  // namespace tierlm
