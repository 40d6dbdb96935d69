#include "prefix/redis_block_tier.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string_view>

#include "prefix/block_record.h"

namespace tierlm::prefix {
namespace {

using Clock = std::chrono::steady_clock;

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::string Hex16(uint64_t v) {
  static const char* d = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = d[v & 15];
  return s;
}

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g s", s);
  return buf;
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

std::string_view ReplyText(const redisReply& r) {
  return r.str != nullptr ? std::string_view(r.str, r.len) : std::string_view();
}

// Blocks SIGPIPE in this thread while it lives; a SIGPIPE raised meanwhile (a write to a
// connection the server closed) is consumed rather than delivered, so a vanished server
// cannot kill a process that did not ignore SIGPIPE.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeGuard() {
    const int saved_errno = errno;
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved_errno;
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

}  // namespace

std::string RedisBlockKey(const std::string& key_prefix, uint64_t identity, uint64_t hash) {
  return key_prefix + "v1:" + Hex16(identity) + ":" + Hex16(hash);
}

// One hiredis context in non-blocking mode, driven by poll so that every wait has a
// deadline; connects lazily and, after a failure, not again for retry_after_s.
class RedisConnection {
 public:
  RedisConnection(const RedisEndpoint& endpoint, const RedisTierOptions& options)
      : endpoint_(endpoint),
        options_(options),
        what_("redis " + DescribeRedisEndpoint(endpoint)) {}
  ~RedisConnection() { Close(); }
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connected, connecting now if no failure is recent; else why not.
  Status Ready() {
    if (ctx_ != nullptr) {
      if (expected_ > 0) return Status::Ok();
      // Nothing is owed on an idle connection, so anything readable is the server closing
      // it (its idle timeout, CLIENT KILL, a restart): replace it now, no failure.
      pollfd p{ctx_->fd, POLLIN, 0};
      if (poll(&p, 1, 0) == 0) return Status::Ok();
      Close();
      return Connect();
    }
    const auto now = Clock::now();
    if (now < retry_at_) {
      const double left = std::chrono::duration<double>(retry_at_ - now).count();
      return Status::IoError(what_ + ": no reconnect for another " + FormatSeconds(left) + " after: " + last_error_);
    }
    return Connect();
  }

  // Queues a command (binary-safe arguments); the next Read or Push sends it.
  Status Append(std::initializer_list<std::string_view> args) {
    const char* argv[8];
    size_t lens[8];
    if (args.size() > 8) return Status::Internal(what_ + ": a command of more than 8 arguments");
    int argc = 0;
    for (std::string_view a : args) {
      argv[argc] = a.data();
      lens[argc] = a.size();
      ++argc;
    }
    if (ctx_ == nullptr) return Status::Internal(what_ + ": command queued while not connected");
    if (redisAppendCommandArgv(ctx_, argc, argv, lens) != REDIS_OK)
      return Fail(Status::IoError(what_ + ": cannot queue a command: " + ctx_->errstr));
    out_pending_ = true;
    ++expected_;
    return Status::Ok();
  }

  // Sends what is queued as far as the socket takes it now, without waiting.
  Status Push() {
    if (ctx_ == nullptr || !out_pending_) return Status::Ok();
    return WriteSome();
  }

  // The next reply (after any abandoned ones), waiting until `deadline` at most. A
  // failure or a timeout closes the connection.
  Result<ReplyPtr> Read(Clock::time_point deadline) {
    if (ctx_ == nullptr) return Status::Internal(what_ + ": reply awaited while not connected");
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(ctx_, &raw) != REDIS_OK)
        return Fail(Status::IoError(what_ + ": bad reply: " + ctx_->errstr));
      if (raw != nullptr) {
        ReplyPtr reply(static_cast<redisReply*>(raw));
        if (expected_ > 0) --expected_;
        if (abandoned_ > 0) {
          --abandoned_;
          continue;
        }
        return reply;
      }
      pollfd p{ctx_->fd, static_cast<short>(POLLIN | (out_pending_ ? POLLOUT : 0)), 0};
      TIERLM_RETURN_IF_ERROR(Poll(p, deadline, "no reply within " + FormatSeconds(options_.io_timeout_s)));
      if ((p.revents & POLLOUT) != 0 || ((p.revents & (POLLERR | POLLHUP)) != 0 && out_pending_))
        TIERLM_RETURN_IF_ERROR(WriteSome());
      if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0 && redisBufferRead(ctx_) != REDIS_OK)
        return Fail(Status::IoError(what_ + ": read: " + ctx_->errstr));
    }
  }

  // The next `n` replies are not wanted: the next Read drops them first.
  void Abandon(size_t n) {
    if (ctx_ != nullptr) abandoned_ += n;
  }

  // Closes the connection after `status` and holds off reconnecting; returns `status`.
  Status Fail(Status status) {
    Close();
    last_error_ = status.message();
    retry_at_ = Clock::now() + Seconds(options_.retry_after_s);
    return status;
  }

 private:
  Status Connect() {
    redisContext* c = endpoint_.socket_path.empty()
                          ? redisConnectNonBlock(endpoint_.host.c_str(), endpoint_.port)
                          : redisConnectUnixNonBlock(endpoint_.socket_path.c_str());
    if (c == nullptr) return Fail(Status::ResourceExhausted(what_ + ": cannot allocate a connection"));
    if (c->err != 0) {
      const std::string why = c->errstr;
      redisFree(c);
      return Fail(Status::IoError(what_ + ": connect: " + why));
    }
    ctx_ = c;
    expected_ = 0;
    abandoned_ = 0;
    out_pending_ = false;
    // A non-blocking connect finishes when the socket turns writable; SO_ERROR says how.
    pollfd p{ctx_->fd, POLLOUT, 0};
    TIERLM_RETURN_IF_ERROR(
        Poll(p, Clock::now() + Seconds(options_.connect_timeout_s),
             "connect timed out after " + FormatSeconds(options_.connect_timeout_s)));
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(ctx_->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return Fail(Status::IoError(what_ + ": connect: " + std::strerror(err)));

    const auto deadline = Clock::now() + Seconds(options_.io_timeout_s);
    const std::string db = std::to_string(endpoint_.db);
    if (!endpoint_.password.empty()) {
      if (endpoint_.user.empty()) {
        TIERLM_RETURN_IF_ERROR(Append({"AUTH", endpoint_.password}));
      } else {
        TIERLM_RETURN_IF_ERROR(Append({"AUTH", endpoint_.user, endpoint_.password}));
      }
      TIERLM_RETURN_IF_ERROR(Expect(deadline, "AUTH"));
    }
    if (endpoint_.db != 0) {
      TIERLM_RETURN_IF_ERROR(Append({"SELECT", db}));
      TIERLM_RETURN_IF_ERROR(Expect(deadline, "SELECT " + db));
    }
    return Status::Ok();
  }

  // Reads a reply that must not be an error.
  Status Expect(Clock::time_point deadline, const std::string& command) {
    TIERLM_ASSIGN_OR_RETURN(ReplyPtr reply, Read(deadline));
    if (reply->type == REDIS_REPLY_ERROR)
      return Fail(Status::IoError(what_ + ": " + command + " refused: " + std::string(ReplyText(*reply))));
    return Status::Ok();
  }

  // Waits for p.events until `deadline`; a timeout or a poll failure fails the connection.
  Status Poll(pollfd& p, Clock::time_point deadline, const std::string& timeout_message) {
    for (;;) {
      const auto left = deadline - Clock::now();
      const double ms = std::ceil(std::chrono::duration<double, std::milli>(left).count());
      if (ms <= 0) return Fail(Status::IoError(what_ + ": " + timeout_message));
      p.revents = 0;
      const int n = poll(&p, 1, static_cast<int>(std::min(ms, 60000.0)));
      if (n > 0) return Status::Ok();
      if (n < 0 && errno != EINTR) return Fail(Status::IoError(what_ + ": poll: " + std::strerror(errno)));
    }
  }

  Status WriteSome() {
    int done = 0;
    int rc;
    {
      SigpipeGuard guard;
      rc = redisBufferWrite(ctx_, &done);
    }
    if (rc != REDIS_OK) return Fail(Status::IoError(what_ + ": write: " + ctx_->errstr));
    out_pending_ = done == 0;
    return Status::Ok();
  }

  void Close() {
    if (ctx_ != nullptr) redisFree(ctx_);
    ctx_ = nullptr;
    expected_ = 0;
    abandoned_ = 0;
    out_pending_ = false;
  }

  const RedisEndpoint endpoint_;
  const RedisTierOptions options_;
  const std::string what_;  // "redis 127.0.0.1:6379/0", for messages
  redisContext* ctx_ = nullptr;
  size_t expected_ = 0;      // replies still to come for the commands sent
  size_t abandoned_ = 0;     // of those, the ones nobody wants
  bool out_pending_ = false;  // commands queued and not yet all written
  Clock::time_point retry_at_{};
  std::string last_error_;
};

Result<std::unique_ptr<RedisBlockTier>> RedisBlockTier::Open(const RedisTierOptions& options) {
  TIERLM_ASSIGN_OR_RETURN(RedisEndpoint endpoint, ParseRedisUrl(options.url));
  const auto bad = [](const std::string& what) { return Status::InvalidArgument("redis tier: " + what); };
  constexpr double kMaxSeconds = 3600;
  if (!(options.connect_timeout_s > 0 && options.connect_timeout_s <= kMaxSeconds))
    return bad("connect_timeout_s must be in (0, 3600] seconds");
  if (!(options.io_timeout_s > 0 && options.io_timeout_s <= kMaxSeconds))
    return bad("io_timeout_s must be in (0, 3600] seconds");
  if (!(options.retry_after_s >= 0 && options.retry_after_s <= kMaxSeconds))
    return bad("retry_after_s must be in [0, 3600] seconds");
  if (options.ttl_seconds < 0) return bad("ttl_seconds must not be negative (0: no TTL)");
  if (options.pipeline_depth == 0) return bad("pipeline_depth must be at least 1");
  return std::unique_ptr<RedisBlockTier>(new RedisBlockTier(options, std::move(endpoint)));
}

RedisBlockTier::RedisBlockTier(const RedisTierOptions& options, RedisEndpoint endpoint)
    : options_(options),
      endpoint_(std::move(endpoint)),
      reader_(std::make_unique<RedisConnection>(endpoint_, options_)),
      writer_(std::make_unique<RedisConnection>(endpoint_, options_)) {
  writer_thread_ = std::thread([this] { WriterLoop(); });
}

RedisBlockTier::~RedisBlockTier() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stop_ = true;
  }
  queue_cv_.notify_all();
  writer_thread_.join();
}

void RedisBlockTier::NoteError(const Status& status) {
  std::lock_guard<std::mutex> lock(counters_mu_);
  ++counters_.errors;
  last_error_ = status.message();
}

size_t RedisBlockTier::Contains(uint64_t identity, std::span<const uint64_t> hashes) {
  if (hashes.empty()) return 0;
  if (Status st = reader_->Ready(); !st.ok()) {
    NoteError(st);
    return 0;
  }
  for (uint64_t hash : hashes) {
    if (Status st = reader_->Append({"EXISTS", RedisBlockKey(options_.key_prefix, identity, hash)}); !st.ok()) {
      NoteError(st);
      return 0;
    }
  }
  // One round trip: every reply within io_timeout_s of the call.
  const auto deadline = Clock::now() + Seconds(options_.io_timeout_s);
  for (size_t i = 0; i < hashes.size(); ++i) {
    auto reply = reader_->Read(deadline);
    if (!reply.ok()) {
      NoteError(reply.status());
      return 0;
    }
    const redisReply& r = **reply;
    if (r.type == REDIS_REPLY_INTEGER && r.integer == 1) continue;
    reader_->Abandon(hashes.size() - i - 1);
    if (r.type == REDIS_REPLY_INTEGER) return i;
    NoteError(Status::IoError("redis " + DescribeRedisEndpoint(endpoint_) + ": EXISTS: " +
                              (r.type == REDIS_REPLY_ERROR ? std::string(ReplyText(r)) : "unexpected reply type")));
    return 0;
  }
  return hashes.size();
}

size_t RedisBlockTier::Load(uint64_t identity, std::span<const uint64_t> hashes, uint64_t payload_bytes,
                            const Sink& sink) {
  if (hashes.empty()) return 0;
  const auto start = Clock::now();
  size_t taken = 0;
  uint64_t misses = 0, corrupt = 0, bytes = 0;
  const auto finish = [&] {
    std::lock_guard<std::mutex> lock(counters_mu_);
    counters_.lookups += taken + misses;
    counters_.hits += taken;
    counters_.misses += misses;
    counters_.corrupt += corrupt;
    counters_.bytes_read += bytes;
    counters_.load_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    return taken;
  };
  const auto fail = [&](const Status& st) {
    NoteError(st);
    misses = 1;
    return finish();
  };

  if (Status st = reader_->Ready(); !st.ok()) return fail(st);
  const size_t n = hashes.size();
  size_t sent = 0, received = 0;
  // GETs go out until `limit` are sent or the chain ends.
  const auto send_until = [&](size_t limit) -> Status {
    for (; sent < n && sent < limit; ++sent)
      TIERLM_RETURN_IF_ERROR(reader_->Append({"GET", RedisBlockKey(options_.key_prefix, identity, hashes[sent])}));
    return Status::Ok();
  };
  if (Status st = send_until(options_.pipeline_depth); !st.ok()) return fail(st);
  for (size_t i = 0; i < n; ++i) {
    auto got = reader_->Read(Clock::now() + Seconds(options_.io_timeout_s));
    if (!got.ok()) return fail(got.status());
    ++received;
    const ReplyPtr reply = std::move(got).value();
    // Keep pipeline_depth GETs in flight while the sink copies this block.
    if (Status st = send_until(i + 1 + options_.pipeline_depth); !st.ok()) return fail(st);
    if (Status st = reader_->Push(); !st.ok()) return fail(st);
    const redisReply& r = *reply;
    if (r.type == REDIS_REPLY_NIL) {
      misses = 1;  // absent: never stored, expired or evicted
      break;
    }
    if (r.type != REDIS_REPLY_STRING) {
      NoteError(Status::IoError("redis " + DescribeRedisEndpoint(endpoint_) + ": GET: " +
                                (r.type == REDIS_REPLY_ERROR ? std::string(ReplyText(r)) : "unexpected reply type")));
      misses = 1;
      break;
    }
    const auto record = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r.str), r.len);
    auto payload = CheckRecord(record, identity, hashes[i], payload_bytes);
    if (!payload.ok()) {
      misses = 1;
      corrupt = 1;
      break;
    }
    if (!sink(i, *payload)) break;
    ++taken;
    bytes += payload->size();
  }
  reader_->Abandon(sent - received);  // the GETs past where the chain stopped
  return finish();
}

void RedisBlockTier::Store(uint64_t identity, uint64_t hash, std::vector<uint8_t> payload) {
  const size_t record_bytes = kRecordHeaderBytes + payload.size();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (pending_.count({identity, hash}) != 0) return;  // queued already
    if (queued_bytes_ + record_bytes > options_.max_queued_bytes) {
      std::lock_guard<std::mutex> counters_lock(counters_mu_);
      ++counters_.dropped;
      return;
    }
    pending_.insert({identity, hash});
    queued_bytes_ += record_bytes;
    ++outstanding_;
  }
  Job job{identity, hash, RedisBlockKey(options_.key_prefix, identity, hash), EncodeRecord(identity, hash, payload)};
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_.push_back(std::move(job));
  }
  queue_cv_.notify_one();
}

void RedisBlockTier::Flush() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  done_cv_.wait(lock, [&] { return outstanding_ == 0; });
}

void RedisBlockTier::Finish(const Job& job, bool written) {
  {
    std::lock_guard<std::mutex> lock(counters_mu_);
    if (written) {
      ++counters_.stored;
      counters_.bytes_written += job.record.size();
    } else {
      ++counters_.dropped;
    }
  }
  std::lock_guard<std::mutex> lock(queue_mu_);
  pending_.erase({job.identity, job.hash});
  queued_bytes_ -= job.record.size();
  if (--outstanding_ == 0) done_cv_.notify_all();
}

void RedisBlockTier::WriterLoop() {
  const std::string ttl = std::to_string(options_.ttl_seconds);
  std::deque<Job> window;  // jobs taken from the queue, oldest first; the first `sent` are sent
  size_t sent = 0;
  const auto drop_window = [&](const Status& why) {
    NoteError(why);
    for (const Job& job : window) Finish(job, false);
    window.clear();
    sent = 0;
  };
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      if (window.empty()) queue_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      while (window.size() < options_.pipeline_depth && !queue_.empty()) {
        window.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (window.empty()) return;  // stopping, and everything is written or dropped
    }
    if (Status st = writer_->Ready(); !st.ok()) {
      drop_window(st);
      continue;
    }
    Status st;
    for (; sent < window.size() && st.ok(); ++sent) {
      const Job& job = window[sent];
      const std::string_view value(reinterpret_cast<const char*>(job.record.data()), job.record.size());
      st = options_.ttl_seconds > 0 ? writer_->Append({"SET", job.key, value, "EX", ttl})
                                    : writer_->Append({"SET", job.key, value});
    }
    if (!st.ok()) {
      drop_window(st);
      continue;
    }
    auto reply = writer_->Read(Clock::now() + Seconds(options_.io_timeout_s));
    if (!reply.ok()) {
      drop_window(reply.status());
      continue;
    }
    const redisReply& r = **reply;
    const bool ok = r.type == REDIS_REPLY_STATUS;
    if (!ok)
      NoteError(Status::IoError("redis " + DescribeRedisEndpoint(endpoint_) + ": SET: " +
                                (r.type == REDIS_REPLY_ERROR ? std::string(ReplyText(r)) : "unexpected reply type")));
    Finish(window.front(), ok);
    window.pop_front();
    --sent;
  }
}

TierCounters RedisBlockTier::Counters() const {
  std::lock_guard<std::mutex> lock(counters_mu_);
  return counters_;
}

std::string RedisBlockTier::LastError() const {
  std::lock_guard<std::mutex> lock(counters_mu_);
  return last_error_;
}

}  // namespace tierlm::prefix
