// RequestStream: what the compute thread tells the HTTP thread serving one request: text
// deltas, per-choice finish reasons, the final usage, or an error; and the one thing the
// HTTP thread tells back: cancel (the client went away). A mutex and a condition variable
// stand between them, so neither ever blocks on the other's socket or step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tierlm::server {

enum class FinishReason { kNone, kStop, kLength };
const char* FinishReasonName(FinishReason r);  // "stop", "length" (kNone: "")

struct TopLogprob {
  int32_t token = 0;
  float logprob = 0;
};

// One sampled token: its log-probability under the model and the most likely alternatives.
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<TopLogprob> top;
};

struct StreamEvent {
  enum class Kind { kDelta, kFinish, kDone, kError };
  Kind kind = Kind::kDelta;
  int32_t choice = 0;
  std::string text;                    // kDelta: text safe to send (may be empty)
  std::vector<TokenLogprob> logprobs;  // kDelta: the tokens behind it, when logprobs were asked for
  FinishReason finish = FinishReason::kNone;  // kFinish
  int64_t prompt_tokens = 0;           // kDone
  int64_t cached_tokens = 0;           // kDone: prompt tokens reused from the prefix cache
  int64_t completion_tokens = 0;       // kDone: over all choices
  int64_t steps_waiting = 0;           // kDone: scheduler steps from submission to first admission
  int64_t steps_running = 0;           // kDone: steps from first admission to the end (preempted ones too)
  int http_status = 500;               // kError
  std::string error;                   // kError
};

class RequestStream {
 public:
  void Push(StreamEvent e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_all();
  }
  // Moves every pending event into *out, waiting up to `timeout` for one; false if none came.
  bool Wait(std::vector<StreamEvent>* out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
    if (events_.empty()) return false;
    while (!events_.empty()) {
      out->push_back(std::move(events_.front()));
      events_.pop_front();
    }
    return true;
  }
  // The client is gone (or the request is abandoned): the scheduler drops it at its next step.
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace tierlm::server
