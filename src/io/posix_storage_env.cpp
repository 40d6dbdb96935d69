#include "io/posix_storage_env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "io/clock.h"
#include "io/read_part.h"
#include "io/read_thread_pool.h"
#include "io/uring_read_queue.h"

namespace tierlm::io {
namespace {

FileIdentity IdentityOf(const struct stat& st) {
  FileIdentity id;
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_nanos = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  id.inode = static_cast<uint64_t>(st.st_ino);
  return id;
}

class PosixFile : public RandomAccessFile {
 public:
  PosixFile(PosixStorageEnv* env, std::string path, int buffered_fd, int direct_fd, FileIdentity id,
            std::string note, FileOptions options)
      : env_(env), path_(std::move(path)), buffered_fd_(buffered_fd), direct_fd_(direct_fd), identity_(id),
        options_(options), direct_enabled_(direct_fd >= 0), note_(std::move(note)) {}

  ~PosixFile() override {
    completions_.WaitNonePending();  // async reads still reference the fds
    if (direct_fd_ >= 0) ::close(direct_fd_);
    ::close(buffered_fd_);
  }

  const std::string& name() const override { return path_; }
  const FileIdentity& identity() const override { return identity_; }

  Status CheckIdentity() override {
    struct stat by_fd {}, by_path {};
    if (::fstat(buffered_fd_, &by_fd) != 0)
      return Status::IoError(path_ + ": fstat: " + std::strerror(errno));
    if (::stat(path_.c_str(), &by_path) != 0)
      return Status::Corruption(path_ + ": file changed since open (the path is gone: " + std::strerror(errno) +
                                "); not reading it");
    const FileIdentity a = IdentityOf(by_fd), b = IdentityOf(by_path);
    if (!(a == identity_) || !(b == identity_) || by_fd.st_dev != by_path.st_dev)
      return Status::Corruption(path_ + ": file changed since open (was " + identity_.ToString() + ", now " +
                                (a == identity_ ? b : a).ToString() + "); not reading it");
    return Status::Ok();
  }

  // Reads every part of [offset, offset + len) in order; stops at the first error or EOF.
  PartOutcome ReadAllParts(uint64_t offset, uint64_t len, uint8_t* dst) {
    PartOutcome total;
    for (const ReadPart& p : Parts(offset, len, dst)) {
      const PartOutcome o = ReadPartFully(p);
      total.bytes += o.bytes;
      total.fell_back |= o.fell_back;
      if (o.err || o.eof) {
        total.err = o.err;
        total.eof = o.eof;
        break;
      }
    }
    return total;
  }

  Status ReadAt(uint64_t offset, uint64_t len, uint8_t* dst, const IoOptions&) override {
    TIERLM_RETURN_IF_ERROR(PreCheck(offset, len));
    return Finish(offset, len, ReadAllParts(offset, len, dst));
  }

  ReadId Submit(const ReadRequest& req) override {
    const ReadId id = completions_.Start();
    const int64_t t0 = SystemClock()->NowNanos();
    ReadResult r;
    r.id = id;
    r.user_data = req.user_data;
    r.status = PreCheck(req.offset, req.len);
    if (!r.status.ok()) {
      completions_.Complete(std::move(r));
      return id;
    }
    const PosixStorageEnv::Engine& engine = env_->engine();
    async_used_ = true;
    if (engine.uring) {
      engine.uring->Submit(Parts(req.offset, req.len, req.dst), [this, r, t0, req](const PartOutcome& o) mutable {
        r.status = Finish(req.offset, req.len, o);
        r.bytes = o.bytes;
        r.latency_nanos = SystemClock()->NowNanos() - t0;
        completions_.Complete(std::move(r));
      });
    } else {
      engine.threads->Run([this, r, t0, req]() mutable {
        const PartOutcome total = ReadAllParts(req.offset, req.len, req.dst);
        r.status = Finish(req.offset, req.len, total);
        r.bytes = total.bytes;
        r.latency_nanos = SystemClock()->NowNanos() - t0;
        completions_.Complete(std::move(r));
      });
    }
    return id;
  }

  FileStats stats() const override {
    FileStats s;
    s.engine = async_used_ ? env_->engine().name : "sync";
    s.direct_io = direct_enabled_.load();
    {
      std::lock_guard<std::mutex> lock(note_mu_);
      s.note = note_;
      if (async_used_ && !env_->engine().note.empty()) s.note += (s.note.empty() ? "" : "; ") + env_->engine().note;
    }
    s.reads = reads_.load();
    s.bytes_read = bytes_.load();
    s.buffered_fragment_reads = fragments_.load();
    return s;
  }

 private:
  Status PreCheck(uint64_t offset, uint64_t len) {
    TIERLM_RETURN_IF_ERROR(CheckReadRange(path_, identity_.size, offset, len));
    if (options_.identity_check == IdentityCheck::kEveryRead) TIERLM_RETURN_IF_ERROR(CheckIdentity());
    return Status::Ok();
  }

  std::vector<ReadPart> Parts(uint64_t offset, uint64_t len, uint8_t* dst) {
    std::vector<ReadPart> parts = SplitRead(direct_enabled_ ? direct_fd_ : -1, buffered_fd_, offset, len, dst);
    for (const ReadPart& p : parts)
      if (p.fragment) fragments_.fetch_add(1, std::memory_order_relaxed);
    return parts;
  }

  Status Finish(uint64_t offset, uint64_t len, const PartOutcome& o) {
    if (o.fell_back && direct_enabled_.exchange(false)) {
      std::lock_guard<std::mutex> lock(note_mu_);
      note_ = "O_DIRECT refused by the file system (EINVAL on read): buffered reads";
    }
    reads_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(o.bytes, std::memory_order_relaxed);
    const std::string where = path_ + ": reading " + std::to_string(len) + " bytes at offset " + std::to_string(offset);
    if (o.err) return Status::IoError(where + ": " + std::strerror(o.err));
    if (o.eof || o.bytes != len)
      return Status::IoError(where + ": unexpected end of file after " + std::to_string(o.bytes) +
                             " bytes (file truncated?)");
    return Status::Ok();
  }

  PosixStorageEnv* env_;
  const std::string path_;
  const int buffered_fd_;
  const int direct_fd_;
  const FileIdentity identity_;
  const FileOptions options_;
  std::atomic<bool> direct_enabled_;
  std::atomic<bool> async_used_{false};
  mutable std::mutex note_mu_;
  std::string note_;
  std::atomic<uint64_t> reads_{0}, bytes_{0}, fragments_{0};
};

}  // namespace

PosixStorageEnv::PosixStorageEnv(PosixEnvOptions options) : options_(options) {}
PosixStorageEnv::~PosixStorageEnv() = default;

const PosixStorageEnv::Engine& PosixStorageEnv::engine() {
  std::call_once(engine_once_, [&] {
    if (options_.engine != AsyncEngine::kThreads) {
      std::string why;
      uring_ = UringReadQueue::Create(options_.queue_depth, &why);
      if (uring_) {
        engine_.uring = uring_.get();
        engine_.name = "io_uring";
        return;
      }
      engine_.note = "io_uring unavailable (" + why + "): pread threads";
    }
    threads_ = std::make_unique<ReadThreadPool>(options_.n_threads);
    engine_.threads = threads_.get();
    engine_.name = "threads";
  });
  return engine_;
}

Result<std::unique_ptr<RandomAccessFile>> PosixStorageEnv::OpenForRandomRead(const std::string& path,
                                                                             const FileOptions& options) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IoError(path + ": cannot open: " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return Status::IoError(path + ": fstat: " + std::strerror(e));
  }
  std::string note;
  int dfd = -1;
  if (options_.direct_io) {
    dfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (dfd < 0) {
      note = std::string("O_DIRECT refused by the file system (") + std::strerror(errno) + "): buffered reads";
    } else if (static_cast<uint64_t>(st.st_size) >= kDirectIoAlignment) {
      // Some file systems accept the flag at open and refuse the reads: probe one block.
      void* probe = std::aligned_alloc(kDirectIoAlignment, kDirectIoAlignment);
      const ssize_t r = probe ? ::pread(dfd, probe, kDirectIoAlignment, 0) : -1;
      const int e = errno;
      std::free(probe);
      if (r < 0) {
        ::close(dfd);
        dfd = -1;
        note = std::string("O_DIRECT refused by the file system (") + std::strerror(e) + " on read): buffered reads";
      }
    }
  } else {
    note = "direct I/O off by option: buffered reads";
  }
  if (dfd < 0) ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  return std::unique_ptr<RandomAccessFile>(new PosixFile(this, path, fd, dfd, IdentityOf(st), note, options));
}

}  // namespace tierlm::io
