// PosixStorageEnv's spill files (storage_env.h, SpillFile): one unlinked file, a buffered
// descriptor and, where the file system takes it, an O_DIRECT twin opened through
// /proc/self/fd; async reads and writes go through the env's io_uring queue or threads.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "io/clock.h"
#include "io/posix_storage_env.h"
#include "io/read_part.h"
#include "io/read_thread_pool.h"
#include "io/uring_read_queue.h"

namespace tierlm::io {
namespace {

class PosixSpillFile : public SpillFile {
 public:
  PosixSpillFile(PosixStorageEnv* env, std::string name, int fd, int direct_fd, uint64_t capacity, std::string note)
      : env_(env), name_(std::move(name)), fd_(fd), direct_fd_(direct_fd), note_(std::move(note)) {
    identity_.size = capacity;
  }
  ~PosixSpillFile() override {
    completions_.WaitNonePending();
    if (direct_fd_ >= 0) ::close(direct_fd_);
    ::close(fd_);
  }

  const std::string& name() const override { return name_; }
  const FileIdentity& identity() const override { return identity_; }
  Status CheckIdentity() override { return Status::Ok(); }

  Status ReadAt(uint64_t offset, uint64_t len, uint8_t* dst, const IoOptions&) override {
    TIERLM_RETURN_IF_ERROR(CheckReadRange(name_, identity_.size, offset, len));
    return Finish(false, offset, len, RunParts(Parts(offset, len, dst, false)));
  }

  Status WriteAt(uint64_t offset, uint64_t len, const uint8_t* src, const IoOptions&) override {
    TIERLM_RETURN_IF_ERROR(CheckWriteRange(name_, identity_.size, offset, len));
    return Finish(true, offset, len, RunParts(Parts(offset, len, const_cast<uint8_t*>(src), true)));
  }

  ReadId Submit(const ReadRequest& req) override {
    return SubmitParts(false, req.offset, req.len, req.dst, req.user_data);
  }
  ReadId SubmitWrite(const WriteRequest& req) override {
    return SubmitParts(true, req.offset, req.len, const_cast<uint8_t*>(req.src), req.user_data);
  }

  FileStats stats() const override {
    FileStats s;
    s.engine = async_used_ ? env_->engine().name : "sync";
    s.direct_io = direct_fd_ >= 0;
    s.note = note_;
    s.reads = reads_.load();
    s.bytes_read = bytes_read_.load();
    s.writes = writes_.load();
    s.bytes_written = bytes_written_.load();
    return s;
  }

 private:
  std::vector<ReadPart> Parts(uint64_t offset, uint64_t len, uint8_t* buf, bool write) {
    std::vector<ReadPart> parts = SplitRead(direct_fd_, fd_, offset, len, buf);
    for (ReadPart& p : parts) p.write = write;
    return parts;
  }
  static PartOutcome RunParts(const std::vector<ReadPart>& parts) {
    PartOutcome total;
    for (const ReadPart& p : parts) {
      const PartOutcome o = ReadPartFully(p);
      total.bytes += o.bytes;
      if (o.err || o.eof) {
        total.err = o.err;
        total.eof = o.eof;
        break;
      }
    }
    return total;
  }

  ReadId SubmitParts(bool write, uint64_t offset, uint64_t len, uint8_t* buf, uint64_t user_data) {
    const ReadId id = completions_.Start();
    const int64_t t0 = SystemClock()->NowNanos();
    ReadResult r;
    r.id = id;
    r.user_data = user_data;
    r.status = write ? CheckWriteRange(name_, identity_.size, offset, len)
                     : CheckReadRange(name_, identity_.size, offset, len);
    if (!r.status.ok()) {
      completions_.Complete(std::move(r));
      return id;
    }
    const PosixStorageEnv::Engine& engine = env_->engine();
    async_used_ = true;
    auto done = [this, r, t0, write, offset, len](const PartOutcome& o) mutable {
      r.status = Finish(write, offset, len, o);
      r.bytes = o.bytes;
      r.latency_nanos = SystemClock()->NowNanos() - t0;
      completions_.Complete(std::move(r));
    };
    std::vector<ReadPart> parts = Parts(offset, len, buf, write);
    if (engine.uring) {
      engine.uring->Submit(std::move(parts), std::move(done));
    } else {
      engine.threads->Run([parts = std::move(parts), done = std::move(done)]() mutable { done(RunParts(parts)); });
    }
    return id;
  }

  Status Finish(bool write, uint64_t offset, uint64_t len, const PartOutcome& o) {
    (write ? writes_ : reads_).fetch_add(1, std::memory_order_relaxed);
    (write ? bytes_written_ : bytes_read_).fetch_add(o.bytes, std::memory_order_relaxed);
    const std::string where = name_ + (write ? ": writing " : ": reading ") + std::to_string(len) +
                              " bytes at offset " + std::to_string(offset);
    if (o.err) return Status::IoError(where + ": " + std::strerror(o.err));
    if (o.eof || o.bytes != len)
      return Status::IoError(where + ": only " + std::to_string(o.bytes) + " bytes " +
                             (write ? "written" : "read"));
    return Status::Ok();
  }

  PosixStorageEnv* env_;
  const std::string name_;
  const int fd_;
  const int direct_fd_;
  FileIdentity identity_;
  const std::string note_;
  std::atomic<bool> async_used_{false};
  std::atomic<uint64_t> reads_{0}, bytes_read_{0}, writes_{0}, bytes_written_{0};
};

}  // namespace

Result<std::unique_ptr<SpillFile>> PosixStorageEnv::CreateSpillFile(const std::string& dir, uint64_t capacity) {
  const std::string where = "spill file in " + dir;
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EINVAL || errno == EISDIR)) {
    // No O_TMPFILE here: a unique name, removed at once.
    std::string tmpl = dir + "/.tierlm-spill-XXXXXX";
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(tmpl.c_str());
  }
  if (fd < 0) return Status::IoError(where + ": cannot create: " + std::strerror(errno));
  if (::ftruncate(fd, static_cast<off_t>(capacity)) != 0) {
    const int e = errno;
    ::close(fd);
    return Status::IoError(where + ": cannot size it to " + std::to_string(capacity) + " bytes: " + std::strerror(e));
  }
  std::string note;
  // Reserve the space now, so a disk too small fails here, before any work, and not in the
  // middle of a generation (a file system that cannot reserve keeps the file sparse).
  const int fe = capacity > 0 ? ::posix_fallocate(fd, 0, static_cast<off_t>(capacity)) : 0;
  if (fe == ENOSPC || fe == EDQUOT || fe == EFBIG) {
    ::close(fd);
    return Status::IoError(where + ": cannot reserve " + std::to_string(capacity) + " bytes: " + std::strerror(fe));
  }
  if (fe != 0) note = std::string("space not reserved (") + std::strerror(fe) + "): a full disk fails writes later";
  int dfd = -1;
  if (options().direct_io) {
    const std::string self = "/proc/self/fd/" + std::to_string(fd);
    dfd = ::open(self.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT);
    if (dfd < 0) {
      note += std::string(note.empty() ? "" : "; ") + "O_DIRECT refused by the file system (" + std::strerror(errno) +
              "): buffered I/O";
    } else if (capacity >= kDirectIoAlignment) {
      // Some file systems take the flag at open and refuse the I/O: probe one block.
      void* probe = std::aligned_alloc(kDirectIoAlignment, kDirectIoAlignment);
      ssize_t r = -1;
      if (probe) {
        std::memset(probe, 0, kDirectIoAlignment);
        r = ::pread(dfd, probe, kDirectIoAlignment, 0);
      }
      const int e = errno;
      std::free(probe);
      if (r < 0) {
        ::close(dfd);
        dfd = -1;
        note += std::string(note.empty() ? "" : "; ") + "O_DIRECT refused by the file system (" + std::strerror(e) +
                " on read): buffered I/O";
      }
    }
  } else {
    note += std::string(note.empty() ? "" : "; ") + "direct I/O off by option: buffered I/O";
  }
  return std::unique_ptr<SpillFile>(new PosixSpillFile(this, where, fd, dfd, capacity, note));
}

}  // namespace tierlm::io
