// ReadThreadPool: worker threads that run blocking reads (the io_uring fallback).
// Thread safety: Run() may be called from any thread; the destructor finishes every
// job already queued.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tierlm::io {

class ReadThreadPool {
 public:
  explicit ReadThreadPool(int n_threads);
  ~ReadThreadPool();
  ReadThreadPool(const ReadThreadPool&) = delete;
  ReadThreadPool& operator=(const ReadThreadPool&) = delete;

  // Queues job to run on a worker. job must not throw.
  void Run(std::function<void()> job);

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace tierlm::io
