#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <system_error>

#if defined(__x86_64__)
#include <immintrin.h>
#define TIERLM_PAUSE() _mm_pause()
#else
#define TIERLM_PAUSE() ((void)0)
#endif

namespace tierlm {

namespace {

using Clock = std::chrono::steady_clock;

// Waiting for a job or for the last worker: spin (a decode job arrives every few
// microseconds), then yield the core (another runnable thread, maybe the one being waited
// for, gets it), then sleep. The phases are timed, checking the clock every kCheckEvery
// spins.
constexpr auto kSpinTime = std::chrono::microseconds(200);
constexpr auto kYieldTime = std::chrono::microseconds(2000);
// The caller waiting for the last worker spins only briefly and does not yield: a worker
// that is still busy after that was most likely descheduled, and sched_yield only helps a
// thread queued on the caller's own core. Sleeping idles the core, so the scheduler pulls
// the waiting worker onto it at once.
constexpr auto kCallerSpinTime = std::chrono::microseconds(50);
constexpr int kCheckEvery = 64;

// Waits until done() or until the spin and yield phases are over; returns done().
template <typename Done>
bool SpinThenYield(Done&& done, Clock::duration spin_time, Clock::duration yield_time) {
  const Clock::time_point start = Clock::now();
  for (;;) {
    for (int i = 0; i < kCheckEvery; ++i) {
      if (done()) return true;
      TIERLM_PAUSE();
    }
    const auto waited = Clock::now() - start;
    if (waited > spin_time + yield_time) return done();
    if (waited > spin_time) {
      if (done()) return true;
      sched_yield();
    }
  }
}

}  // namespace

int DefaultThreadCount() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

Result<int> ResolveThreadCount(int64_t requested, const std::string& flag) {
  if (requested <= 0) return DefaultThreadCount();
  if (requested > kMaxThreads)
    return Status::InvalidArgument(flag + " " + std::to_string(requested) + ": at most " + std::to_string(kMaxThreads) +
                                   " threads (this machine has " + std::to_string(DefaultThreadCount()) +
                                   " cores; 0 or a negative count uses them all)");
  return static_cast<int>(requested);
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  try {
    workers_.reserve(n_threads_ - 1);
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
  } catch (...) {
    // A joinable std::thread destroyed during unwinding would call std::terminate: stop
    // and join the workers that did start before passing the failure on.
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true);
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    throw;
  }
}

Result<std::unique_ptr<ThreadPool>> ThreadPool::Create(int n_threads) {
  try {
    return std::make_unique<ThreadPool>(n_threads);
  } catch (const std::system_error& e) {
    return Status::ResourceExhausted("cannot start " + std::to_string(n_threads) + " threads (" + e.what() +
                                     "): use fewer with -t");
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory starting " + std::to_string(n_threads) + " threads: use fewer with -t");
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  // A worker going to sleep counts itself in sleepers_ before its last look at the
  // generation (both seq_cst), so either it sees the new job or we see it and wake it.
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }
    cv_.notify_all();
  }
  fn(0, n_threads_);
  WaitForWorkers();
  job_ = nullptr;
}

void ThreadPool::WaitForWorkers() {
  auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (SpinThenYield(done, kCallerSpinTime, Clock::duration::zero())) return;
  std::unique_lock<std::mutex> lock(mu_);
  caller_waiting_.store(true, std::memory_order_seq_cst);
  done_cv_.wait(lock, done);
  caller_waiting_.store(false, std::memory_order_relaxed);
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int use = static_cast<int>(std::min<int64_t>(n_threads_, max_chunks));
  if (use <= 1) {
    fn(0, n);
    return;
  }
  Run([&](int i, int) {
    if (i >= use) return;
    const int64_t begin = n * i / use;
    const int64_t end = n * (i + 1) / use;
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::ParallelForDynamic(int64_t n, int64_t chunk,
                                    const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  if (n_threads_ == 1 || n <= chunk) {
    for (int64_t b = 0; b < n; b += chunk) fn(b, std::min(n, b + chunk));
    return;
  }
  std::atomic<int64_t> next{0};
  Run([&](int, int) {
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) return;
      fn(b, std::min(n, b + chunk));
    }
  });
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    auto has_job = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!SpinThenYield(has_job, kSpinTime, kYieldTime)) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      cv_.wait(lock, has_job);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    (*job_)(index, n_threads_);
    if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_waiting_.load(std::memory_order_seq_cst)) {
      { std::lock_guard<std::mutex> lock(mu_); }
      done_cv_.notify_one();
    }
  }
}

}  // namespace tierlm
