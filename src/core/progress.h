// Progress of long work (writing a synthetic model, loading weights, building the low-bit
// expert cache, a long prefill, a benchmark) as one line on stderr, like llama.cpp's and
// ollama's loaders:
//
//   synth: 4.2 GiB / 16.1 GiB (26%), 310 MiB/s, 39 s left
//   lowbit cache: 1203 / 6144 expert slices (19%), 2.9/s, 28 min left
//   synth: 16.1 GiB / 16.1 GiB (100%), 305 MiB/s, done in 54 s        <- the final line
//
// On a terminal the line is redrawn in place (carriage return) and ends with a newline when
// the work finishes; otherwise (a log, a pipe) plain lines are written, at most one per
// interval, plus the final line. Work shorter than the delay (1 s) prints nothing, and the
// final line is printed only when an earlier line was (or the work outlasted the delay).
//
// Library code never prints progress itself: it takes a ProgressFn (in its options) and
// calls it with what is done so far; the CLI turns that into a Progress.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace tierlm {

// Reports how far work has got: units done so far and the total (bytes or items, as the
// caller documents). The first call is (0, total) when the work starts, the last one
// (total, total). May be called from any thread; an empty function reports nothing.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct ProgressOptions {
  bool quiet = false;          // print nothing at all
  bool tty = false;            // redraw one line in place instead of writing plain lines
  int64_t interval_ms = 10000;  // least time between two lines (or redraws)
  int64_t delay_ms = 1000;      // no line before the work has run this long
  // Monotonic clock in nanoseconds. Default: std::chrono::steady_clock.
  std::function<int64_t()> now_nanos;
  // Where the text goes. Default: stderr, flushed.
  std::function<void(const std::string&)> write;

  // For the CLI: tty = isatty(2); interval 200 ms on a terminal, 10 s otherwise;
  // TIERLM_PROGRESS_INTERVAL_MS and TIERLM_PROGRESS_DELAY_MS (milliseconds, >= 0)
  // override the interval and the delay.
  static ProgressOptions FromEnvironment(bool quiet);
};

class Progress {
 public:
  enum class Unit { kBytes, kItems };

  explicit Progress(ProgressOptions options);
  // Ends a terminal line left open by work that did not finish (an error follows).
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Begins (or restarts) reporting: label ("synth"), total (0: not known yet; the first
  // Update sets it), unit and, for items, their name ("expert slices"). The clock starts
  // now, and again at an Update(0, total) that arrives before any work is done.
  void Start(std::string label, uint64_t total, Unit unit, std::string noun = "");
  void SetLabel(std::string label);
  // Thread-safe. Reaching the total finishes (the final line).
  void Advance(uint64_t n = 1);
  void Set(uint64_t done);
  void Update(uint64_t done, uint64_t total);
  // Prints the final line if anything was printed or the work outlasted the delay; then
  // nothing until the next Start. Idempotent.
  void Finish();
  // Ends reporting without a final line (the work failed; an error message follows):
  // closes a terminal line left open. Idempotent.
  void Stop();

  // A ProgressFn that calls Update on this object (which must outlive its use).
  ProgressFn Reporter();

  // Whether any line has been printed since Start.
  bool printed() const;

 private:
  void UpdateLocked(uint64_t done, uint64_t total);
  void MaybePrintLocked(bool final);
  int64_t Now() const;

  ProgressOptions options_;
  mutable std::mutex mu_;
  std::string label_, noun_;
  Unit unit_ = Unit::kItems;
  uint64_t done_ = 0, total_ = 0;
  int64_t start_ns_ = 0, last_line_ns_ = 0;
  bool active_ = false;
  bool any_work_ = false;  // an update with done > 0 has arrived
  bool printed_ = false;
  bool line_open_ = false;  // a terminal line is drawn without its newline
  size_t drawn_chars_ = 0;
};

// The text of a progress line (no carriage return, no newline), for a state and the
// seconds since the work started. final: "done in <elapsed>" instead of the time left.
std::string FormatProgressLine(const std::string& label, uint64_t done, uint64_t total, Progress::Unit unit,
                               const std::string& noun, double elapsed_seconds, bool final);
// "512 B", "12.3 KiB", "310 MiB", "4.2 GiB": one decimal under 100, none from 100.
std::string FormatProgressBytes(double bytes);
// "39 s", "28 min", "1 h 5 min" (time left: whole units, rounded up under a minute).
std::string FormatTimeLeft(double seconds);
// "0.4 s", "54 s", "2 min 10 s", "1 h 5 min" (time taken).
std::string FormatElapsed(double seconds);

}  // namespace tierlm
