#include "kernels/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "kernels/kernel_registry.h"

namespace tierlm {
namespace {

// Prefill cache blocking: each kernel call covers at most kRowBlock weight rows (about
// 74 KiB of Q4_0 at n_in = 2048, L2-resident) x kTokBlock tokens of activations.
constexpr int64_t kRowBlock = 64;
constexpr int64_t kTokBlock = 64;
// Units of work handed out per thread: rows go in kChunksPerThread long contiguous runs
// per thread. Measured (TinyLlama Q4_0 decode, 2 threads, Sapphire Rapids): 64-row chunks
// 33.4 t/s, 256-row 39, two runs per thread 41.5, one 42: a thread streaming long runs of
// consecutive rows keeps the prefetchers and DRAM pages busy. Two runs each rather than one
// still let the other threads take over from one the OS deschedules. Prefill is as fast or
// faster (its kernels block rows themselves).
constexpr int64_t kChunksPerThread = 2;

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

int64_t ChunkRows(int64_t n_out, int64_t tile, int n_threads) {
  const int64_t want = n_out / (kChunksPerThread * n_threads);
  return std::max<int64_t>(1, (want + tile - 1) / tile) * tile;
}

// Computes weight rows [row_begin, row_end) of w for every token; act holds the tokens'
// activations in the kernel's format.
// batched: the entry's batched kernel for these tokens (BatchedKernelFor), or null.
void RunRows(const KernelSet::Entry& entry, GemmFn batched, const WeightMatrix& w, const uint8_t* act,
             const ActLayout& layout, int64_t n_tok, float* y, int64_t y_stride, int64_t row_begin,
             int64_t row_end) {
  const int64_t w_row_bytes = RowBytes(w.type, w.n_in);
  GemmArgs args{};
  args.w_row_bytes = w_row_bytes;
  args.act_layout = layout;
  args.n_in = w.n_in;
  args.y_stride = y_stride;
  if (batched != nullptr || n_tok == 1) {
    args.w = static_cast<const uint8_t*>(w.data) + row_begin * w_row_bytes;
    args.n_rows = row_end - row_begin;
    args.act = act;
    args.n_tok = n_tok;
    args.y = y + row_begin;
    (batched != nullptr ? batched : entry.gemm)(args);
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
}

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
  const BatchedKernel batched = BatchedKernelFor(entry, n_tok);
  const ActFormat act_format = batched.fn != nullptr ? batched.act : entry.act;
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

  const int64_t tile = batched.fn != nullptr ? batched.row_tile : entry.row_tile;
  // Rows are handed out in chunks from a shared counter (ParallelForDynamic), so a thread
  // the OS deschedules does not stall the matmul (kChunksPerThread).
  const int64_t chunk_rows = ChunkRows(w.n_out, tile, n_threads);
  auto rows = [&](int64_t row_begin, int64_t row_end) {
    RunRows(entry, batched.fn, w, act, layout, n_tok, y, y_stride, row_begin, row_end);
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

void MatmulBatchWithKernels(const KernelSet& kernels, std::span<const MatmulJob> jobs, ThreadPool* pool) {
  const int n_threads = pool ? pool->size() : 1;
  struct Prepared {
    const KernelSet::Entry* entry;
    ActLayout layout;
    size_t act_offset;  // into the shared activation buffer
  };
  std::vector<Prepared> prep;
  std::vector<size_t> batched_jobs;  // run one by one with the prefill kernels
  size_t act_bytes = 0;
  // Jobs reading the same activations in the same format share one conversion.
  std::vector<size_t> source(jobs.size(), SIZE_MAX);
  for (size_t j = 0; j < jobs.size(); ++j) {
    const MatmulJob& job = jobs[j];
    const int kt = KernelTypeIndex(job.w.type);
    if (kt < 0) std::abort();
    const KernelSet::Entry& entry = kernels.entries[kt];
    prep.push_back({&entry, GetActLayout(entry.act, job.w.n_in), 0});
    if (job.n_tok <= 0 || job.w.n_out <= 0) continue;
    if (BatchedKernelFor(entry, job.n_tok).fn != nullptr) {
      batched_jobs.push_back(j);
      continue;
    }
    for (size_t i = 0; i < j && source[j] == SIZE_MAX; ++i)
      if (source[i] == i && jobs[i].x == job.x && jobs[i].x_stride == job.x_stride && jobs[i].n_tok == job.n_tok &&
          jobs[i].w.n_in == job.w.n_in && prep[i].entry->act == entry.act)
        source[j] = i;
    if (source[j] == SIZE_MAX) {
      source[j] = j;
      prep[j].act_offset = act_bytes;
      act_bytes += static_cast<size_t>((prep[j].layout.row_bytes * job.n_tok + 63) / 64 * 64);
    }
  }
  for (size_t j : batched_jobs) {
    const MatmulJob& job = jobs[j];
    MatmulWithKernels(kernels, job.w, job.x, job.x_stride, job.n_tok, job.y, job.y_stride, pool);
  }

  static thread_local ActBuffer act_buffer;
  uint8_t* act = act_buffer.Reserve(std::max<size_t>(act_bytes, 64));
  struct Item {
    uint32_t job;
    int64_t row_begin, row_end;
  };
  std::vector<Item> items;
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (source[j] != j) continue;
    const MatmulJob& job = jobs[j];
    for (int64_t t = 0; t < job.n_tok; ++t)
      ConvertActivationRow(prep[j].entry->act, job.x + t * job.x_stride, job.w.n_in,
                           act + prep[j].act_offset + t * prep[j].layout.row_bytes);
  }
  // With enough jobs to go round, a whole job is one item (one long contiguous stream of
  // weights per thread); otherwise jobs are split as Matmul splits a matrix.
  size_t n_jobs = 0;
  for (size_t j = 0; j < jobs.size(); ++j) n_jobs += source[j] != SIZE_MAX;
  const bool whole_jobs = static_cast<int64_t>(n_jobs) >= 4 * n_threads;
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (source[j] == SIZE_MAX) continue;
    const int64_t chunk = whole_jobs ? jobs[j].w.n_out : ChunkRows(jobs[j].w.n_out, prep[j].entry->row_tile, n_threads);
    for (int64_t r = 0; r < jobs[j].w.n_out; r += chunk)
      items.push_back({static_cast<uint32_t>(j), r, std::min(jobs[j].w.n_out, r + chunk)});
  }
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Item& it = items[static_cast<size_t>(i)];
      const MatmulJob& job = jobs[it.job];
      const Prepared& p = prep[it.job];
      RunRows(*p.entry, nullptr, job.w, act + prep[source[it.job]].act_offset, p.layout, job.n_tok, job.y,
              job.y_stride, it.row_begin, it.row_end);
    }
  };
  const int64_t n_items = static_cast<int64_t>(items.size());
  if (pool == nullptr || n_threads == 1) run(0, n_items);
  else pool->ParallelForDynamic(n_items, 1, run);
}

void MatmulBatch(std::span<const MatmulJob> jobs, ThreadPool* pool) {
  MatmulBatchWithKernels(KernelsFor(ActiveKernelPath()), jobs, pool);
}

}  // namespace tierlm
