// A fork-join pool of persistent worker threads for compute kernels.
//
// Run(fn) calls fn(thread_index, n_threads) once on each of the n_threads threads
// (the caller is thread 0) and returns when all have finished. Workers spin briefly
// between jobs (decode issues hundreds of small jobs per token), then yield the core for
// a while, then sleep; the caller waits for the last worker the same way (spin, yield,
// sleep), so a descheduled worker on a busy machine never has a spinning thread
// competing with it for its core for long.
//
// Thread safety: Run() must be called from one thread at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"

namespace tierlm {

// The most threads a pool may have: -t above it is refused (ggml allows 512; a pool of
// 1024 threads on a few cores is already only a slower way to get the same work done).
inline constexpr int kMaxThreads = 1024;

class ThreadPool {
 public:
  // n_threads >= 1; n_threads - 1 workers are started. Throws std::system_error when the
  // OS cannot start a thread (after joining the workers it did start); Create returns that
  // as a Status instead.
  explicit ThreadPool(int n_threads);
  // A pool of n_threads, or ResourceExhausted naming the count when the OS cannot start
  // that many threads (thread or memory limits).
  static Result<std::unique_ptr<ThreadPool>> Create(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(i, size()) for i in [0, size()) in parallel; returns when all return.
  // fn must not throw.
  void Run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into contiguous chunks of at least `grain` items, one per thread,
  // and calls fn(begin, end) for each non-empty chunk.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Calls fn(begin, end) for consecutive chunks of `chunk` items covering [0, n), handed
  // out to the threads one at a time from a shared counter: when the OS deschedules a
  // thread (a busy machine), the others take its share instead of waiting for it.
  void ParallelForDynamic(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);
  void WaitForWorkers();

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};          // workers asleep (or about to be) on cv_
  std::atomic<bool> caller_waiting_{false};  // Run's caller asleep (or about to be) on done_cv_
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
};

// Number of threads to use by default: the cores this process may run on.
int DefaultThreadCount();

// The thread count a -t flag asks for: requested <= 0 means DefaultThreadCount() (as
// llama.cpp's -t -1); above kMaxThreads is InvalidArgument naming the flag.
Result<int> ResolveThreadCount(int64_t requested, const std::string& flag = "-t");

}  // namespace tierlm
