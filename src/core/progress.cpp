#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace tierlm {
namespace {

// A non-negative integer from the environment, or fallback when unset or malformed.
int64_t EnvMillis(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < 0) return fallback;
  return static_cast<int64_t>(x);
}

std::string Printf(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

ProgressOptions ProgressOptions::FromEnvironment(bool quiet) {
  ProgressOptions o;
  o.quiet = quiet;
  o.tty = ::isatty(STDERR_FILENO) == 1;
  o.interval_ms = EnvMillis("TIERLM_PROGRESS_INTERVAL_MS", o.tty ? 200 : 10000);
  o.delay_ms = EnvMillis("TIERLM_PROGRESS_DELAY_MS", 1000);
  return o;
}

std::string FormatProgressBytes(double b) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && b >= 1024.0) {
    b /= 1024.0;
    ++u;
  }
  if (u == 0) return Printf("%.0f B", b);
  return Printf(b < 100 ? "%.1f " : "%.0f ", b) + kUnits[u];
}

std::string FormatTimeLeft(double s) {
  if (!(s >= 0)) s = 0;
  if (s <= 59) return Printf("%.0f s", std::max(1.0, std::ceil(s)));
  if (s < 3570) return Printf("%.0f min", std::max(1.0, std::round(s / 60)));
  double h = std::floor(s / 3600), m = std::round((s - h * 3600) / 60);
  if (m >= 60) {
    h += 1;
    m = 0;
  }
  return Printf("%.0f h ", h) + Printf("%.0f min", m);
}

std::string FormatElapsed(double s) {
  if (!(s >= 0)) s = 0;
  if (s < 9.95) return Printf("%.1f s", s);
  if (s < 59.5) return Printf("%.0f s", s);
  const double whole = std::round(s);
  if (whole < 3600) return Printf("%.0f min ", std::floor(whole / 60)) + Printf("%.0f s", std::fmod(whole, 60));
  const double h = std::floor(whole / 3600);
  return Printf("%.0f h ", h) + Printf("%.0f min", std::floor((whole - h * 3600) / 60));
}

std::string FormatProgressLine(const std::string& label, uint64_t done, uint64_t total, Progress::Unit unit,
                               const std::string& noun, double elapsed, bool final) {
  const bool bytes = unit == Progress::Unit::kBytes;
  auto amount = [&](uint64_t n) {
    return bytes ? FormatProgressBytes(static_cast<double>(n)) : std::to_string(n);
  };
  std::string line = label + ": " + amount(done);
  if (total > 0) line += " / " + amount(total);
  if (!bytes && !noun.empty()) line += " " + noun;
  if (total > 0) line += " (" + std::to_string(std::min<uint64_t>(100, done * 100 / total)) + "%)";
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  if (rate > 0)
    line += ", " + (bytes ? FormatProgressBytes(rate) + "/s" : Printf(rate < 100 ? "%.1f/s" : "%.0f/s", rate));
  if (final) {
    line += ", done in " + FormatElapsed(elapsed);
  } else if (rate > 0 && total > done) {
    line += ", " + FormatTimeLeft(static_cast<double>(total - done) / rate) + " left";
  }
  return line;
}

Progress::Progress(ProgressOptions options) : options_(std::move(options)) {
  if (!options_.now_nanos)
    options_.now_nanos = [] {
      return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::steady_clock::now().time_since_epoch())
                                      .count());
    };
  if (!options_.write)
    options_.write = [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stderr);
      std::fflush(stderr);
    };
}

Progress::~Progress() { Stop(); }

void Progress::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (line_open_) options_.write("\n");
  line_open_ = false;
  active_ = false;
}

int64_t Progress::Now() const { return options_.now_nanos(); }

void Progress::Start(std::string label, uint64_t total, Unit unit, std::string noun) {
  std::lock_guard<std::mutex> lock(mu_);
  if (line_open_) options_.write("\n");
  label_ = std::move(label);
  noun_ = std::move(noun);
  unit_ = unit;
  done_ = 0;
  total_ = total;
  start_ns_ = Now();
  last_line_ns_ = start_ns_;
  active_ = true;
  any_work_ = false;
  printed_ = false;
  line_open_ = false;
  drawn_chars_ = 0;
}

void Progress::SetLabel(std::string label) {
  std::lock_guard<std::mutex> lock(mu_);
  label_ = std::move(label);
}

void Progress::Advance(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_) UpdateLocked(done_ + n, 0);
}

void Progress::Set(uint64_t done) { Update(done, 0); }

void Progress::Update(uint64_t done, uint64_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_) UpdateLocked(done, total);
}

void Progress::UpdateLocked(uint64_t done, uint64_t total) {
  if (total > 0) total_ = total;
  if (done == 0 && !any_work_) {
    start_ns_ = Now();  // the work starts now (it may have been queued behind other work)
    last_line_ns_ = start_ns_;
    return;
  }
  done_ = done;
  any_work_ = any_work_ || done > 0;
  const bool complete = total_ > 0 && done_ >= total_;
  MaybePrintLocked(complete);
  if (complete) active_ = false;
}

void Progress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!active_) return;
  MaybePrintLocked(/*final=*/true);
  active_ = false;
}

void Progress::MaybePrintLocked(bool final) {
  if (options_.quiet) return;
  const int64_t now = Now();
  const int64_t elapsed = now - start_ns_;
  const int64_t delay = options_.delay_ms * 1'000'000;
  if (final) {
    if (!printed_ && !(any_work_ && elapsed >= delay)) return;
  } else {
    if (done_ == 0 || elapsed < delay) return;
    if (printed_ && now - last_line_ns_ < options_.interval_ms * 1'000'000) return;
  }
  const std::string line = FormatProgressLine(label_, done_, total_, unit_, noun_, elapsed / 1e9, final);
  std::string out;
  if (options_.tty) {
    out = "\r" + line;
    if (drawn_chars_ > line.size()) out.append(drawn_chars_ - line.size(), ' ');
    drawn_chars_ = line.size();
    if (final) out += "\n";
    line_open_ = !final;
  } else {
    out = line + "\n";
  }
  options_.write(out);
  printed_ = true;
  last_line_ns_ = now;
}

ProgressFn Progress::Reporter() {
  return [this](uint64_t done, uint64_t total) { Update(done, total); };
}

bool Progress::printed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return printed_;
}

}  // namespace tierlm
