// Clock: the time source for I/O latency, deadlines and stall accounting.
//
// SystemClock reads and sleeps on the steady clock. ManualClock is simulated time for
// deterministic tests: SleepUntil() advances it instead of blocking, so "a read that
// takes 5 ms" costs no wall time and every stall is an exact number.
//
// Thread safety: both implementations may be used from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace tierlm::io {

class Clock {
 public:
  virtual ~Clock() = default;
  // Nanoseconds since an arbitrary epoch; never decreases.
  virtual int64_t NowNanos() = 0;
  // Returns once NowNanos() >= t (at once if it already is).
  virtual void SleepUntil(int64_t t_nanos) = 0;
};

// The process-wide steady clock. Never null.
Clock* SystemClock();

class ManualClock : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 0) : now_(start_nanos) {}
  int64_t NowNanos() override { return now_.load(std::memory_order_acquire); }
  void SleepUntil(int64_t t_nanos) override { AdvanceTo(t_nanos); }
  void Advance(int64_t d_nanos) { now_.fetch_add(d_nanos, std::memory_order_acq_rel); }
  void AdvanceTo(int64_t t_nanos) {
    int64_t cur = now_.load(std::memory_order_acquire);
    while (cur < t_nanos && !now_.compare_exchange_weak(cur, t_nanos, std::memory_order_acq_rel)) {
    }
  }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace tierlm::io
