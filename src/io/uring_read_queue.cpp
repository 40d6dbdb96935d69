#include "io/uring_read_queue.h"

#ifdef TIERLM_HAVE_URING
#include <liburing.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#endif

namespace tierlm::io {

#ifdef TIERLM_HAVE_URING
namespace {

struct Request {
  std::mutex mu;
  int remaining = 0;
  PartOutcome total;
  UringReadQueue::Done done;
};

struct Op {
  std::shared_ptr<Request> req;
  ReadPart part;
  uint64_t done_bytes = 0;
  bool fell_back = false;
};

class UringReadQueueImpl : public UringReadQueue {
 public:
  explicit UringReadQueueImpl(unsigned depth) : depth_(depth) {}

  bool Init(std::string* why_not) {
    const int e = io_uring_queue_init(depth_, &ring_, 0);
    if (e < 0) {
      *why_not = std::string("io_uring_queue_init: ") + std::strerror(-e);
      return false;
    }
    reaper_ = std::thread([this] { ReapLoop(); });
    return true;
  }

  ~UringReadQueueImpl() override {
    if (!reaper_.joinable()) return;
    {
      std::unique_lock<std::mutex> lock(sq_mu_);
      space_cv_.wait(lock, [&] { return in_flight_ == 0 && backlog_.empty(); });
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data(sqe, nullptr);
      io_uring_submit(&ring_);
    }
    reaper_.join();
    io_uring_queue_exit(&ring_);
  }

  void Submit(std::vector<ReadPart> parts, Done done) override {
    auto req = std::make_shared<Request>();
    req->done = std::move(done);
    std::vector<Op*> ops;
    for (const ReadPart& p : parts) {
      for (uint64_t at = 0; at < p.len; at += kOpBytes) {
        auto* op = new Op;
        op->req = req;
        op->part = p;
        op->part.offset = p.offset + at;
        op->part.dst = p.dst + at;
        op->part.len = std::min<uint64_t>(kOpBytes, p.len - at);
        ops.push_back(op);
      }
    }
    if (ops.empty()) {
      req->done(PartOutcome{});
      return;
    }
    req->remaining = static_cast<int>(ops.size());
    std::lock_guard<std::mutex> lock(sq_mu_);
    for (Op* op : ops) {
      if (in_flight_ >= depth_) {
        backlog_.push_back(op);  // submitted by the reaper as ops complete
        continue;
      }
      ++in_flight_;
      PrepLocked(op);
    }
  }

 private:
  // REQUIRES: sq_mu_ held.
  void PrepLocked(Op* op) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (!sqe) {  // SQ full of unsubmitted entries: flush and retry
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    const unsigned n = static_cast<unsigned>(op->part.len - op->done_bytes);
    const off_t at = static_cast<off_t>(op->part.offset + op->done_bytes);
    if (op->part.write) {
      io_uring_prep_write(sqe, op->part.fd, op->part.dst + op->done_bytes, n, at);
    } else {
      io_uring_prep_read(sqe, op->part.fd, op->part.dst + op->done_bytes, n, at);
    }
    io_uring_sqe_set_data(sqe, op);
    io_uring_submit(&ring_);
  }

  void Resubmit(Op* op) {
    std::lock_guard<std::mutex> lock(sq_mu_);
    PrepLocked(op);
  }

  void Finish(Op* op, int err, bool eof) {
    std::shared_ptr<Request> req = std::move(op->req);
    bool last = false;
    {
      std::lock_guard<std::mutex> lock(req->mu);
      req->total.bytes += op->done_bytes;
      req->total.fell_back |= op->fell_back;
      if (!req->total.err && !req->total.eof) {
        req->total.err = err;
        req->total.eof = eof;
      }
      last = --req->remaining == 0;
    }
    delete op;
    {
      std::lock_guard<std::mutex> lock(sq_mu_);
      --in_flight_;
      if (!backlog_.empty()) {
        Op* next = backlog_.front();
        backlog_.pop_front();
        ++in_flight_;
        PrepLocked(next);
      }
    }
    space_cv_.notify_all();
    if (last) req->done(req->total);
  }

  void ReapLoop() {
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      const int e = io_uring_wait_cqe(&ring_, &cqe);
      if (e == -EINTR) continue;
      if (e < 0) continue;  // transient; the kernel keeps the completions
      Op* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (!op) return;  // shutdown marker
      if (res == -EINTR || res == -EAGAIN) {
        Resubmit(op);
      } else if (res == -EINVAL && op->part.fallback_fd >= 0 && op->part.fd != op->part.fallback_fd) {
        op->part.fd = op->part.fallback_fd;
        op->fell_back = true;
        Resubmit(op);
      } else if (res < 0) {
        Finish(op, -res, false);
      } else if (res == 0) {
        Finish(op, 0, true);
      } else {
        op->done_bytes += static_cast<uint64_t>(res);
        if (op->done_bytes < op->part.len) {
          // A short read leaves the rest unaligned for O_DIRECT: finish it buffered.
          if (op->part.fallback_fd >= 0 && (op->part.offset + op->done_bytes) % 4096 != 0) {
            op->part.fd = op->part.fallback_fd;
          }
          Resubmit(op);
        } else {
          Finish(op, 0, false);
        }
      }
    }
  }

  const unsigned depth_;
  io_uring ring_{};
  std::thread reaper_;
  std::mutex sq_mu_;
  std::condition_variable space_cv_;
  unsigned in_flight_ = 0;
  std::deque<Op*> backlog_;  // ops waiting for a slot in the ring
};

}  // namespace

std::unique_ptr<UringReadQueue> UringReadQueue::Create(unsigned depth, std::string* why_not) {
  auto q = std::make_unique<UringReadQueueImpl>(depth);
  if (!q->Init(why_not)) return nullptr;
  return q;
}

#else

std::unique_ptr<UringReadQueue> UringReadQueue::Create(unsigned, std::string* why_not) {
  *why_not = "built without liburing";
  return nullptr;
}

#endif

}  // namespace tierlm::io
