#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace tierlm {
namespace {

TEST(ThreadPoolTest, RunCallsEveryThreadOnce) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    for (int rep = 0; rep < 200; ++rep) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.Run([&](int i, int nth) {
        ASSERT_EQ(nth, n);
        hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPoolTest, ParallelForDynamicCoversEachItemOnce) {
  for (int n_threads : {1, 2, 4}) {
    ThreadPool pool(n_threads);
    for (int64_t n : {0, 1, 7, 64, 1000}) {
      for (int64_t chunk : {1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.ParallelForDynamic(n, chunk, [&](int64_t b, int64_t e) {
          ASSERT_LT(b, e);
          ASSERT_LE(e - b, chunk);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "n=" << n << " chunk=" << chunk;
      }
    }
  }
}

// Jobs spaced further apart than the spin and yield phases: workers (and the caller, when
// a worker is slow) go to sleep and must be woken every time.
TEST(ThreadPoolTest, WakesSleepingWorkersAndCaller) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 4; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<int> sum{0};
    pool.Run([&](int i, int) {
      if (i == 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // caller outwaits its spin
      sum.fetch_add(i + 1);
    });
    ASSERT_EQ(sum.load(), 6);
  }
}

}  // namespace
}  // namespace tierlm
