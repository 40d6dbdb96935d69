#include "io/clock.h"

#include <chrono>
#include <thread>

namespace tierlm::io {
namespace {

class SteadyClock : public Clock {
 public:
  int64_t NowNanos() override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void SleepUntil(int64_t t_nanos) override {
    const int64_t now = NowNanos();
    if (t_nanos > now) std::this_thread::sleep_for(std::chrono::nanoseconds(t_nanos - now));
  }
};

}  // namespace

Clock* SystemClock() {
  static SteadyClock clock;  // stateless; safe to share
  return &clock;
}

}  // namespace tierlm::io
