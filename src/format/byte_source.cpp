#include "format/byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tierlm {

Status MemoryByteSource::Read(uint64_t offset, void* dst, size_t n) {
  if (offset > size_ || n > size_ - offset)
    return Status::OutOfRange("read of " + std::to_string(n) + " bytes at offset " +
                              std::to_string(offset) + " past end (" + std::to_string(size_) + " bytes)");
  std::memcpy(dst, data_ + offset, n);
  return Status::Ok();
}

Result<std::unique_ptr<FileByteSource>> FileByteSource::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return Status::NotFound(path + ": no such file");
    if (err == EACCES) return Status::InvalidArgument(path + ": permission denied");
    return Status::IoError(path + ": cannot open: " + std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::IoError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + ": not a regular file");
  }
  return std::unique_ptr<FileByteSource>(new FileByteSource(fd, static_cast<uint64_t>(st.st_size), path));
}

FileByteSource::~FileByteSource() { ::close(fd_); }

Status FileByteSource::Read(uint64_t offset, void* dst, size_t n) {
  if (offset > size_ || n > size_ - offset)
    return Status::OutOfRange(path_ + ": read of " + std::to_string(n) + " bytes at offset " +
                              std::to_string(offset) + " past end of file (" + std::to_string(size_) + " bytes)");
  // Serve small reads from a 64 KiB window.
  constexpr size_t kWindow = 64 << 10;
  if (n <= kWindow / 2) {
    if (offset < buf_offset_ || offset + n > buf_offset_ + buf_.size()) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kWindow, size_ - offset));
      buf_.resize(want);
      size_t got = 0;
      while (got < want) {
        ssize_t r = ::pread(fd_, buf_.data() + got, want - got, static_cast<off_t>(offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          buf_.clear();
          return Status::IoError(path_ + ": read failed at offset " + std::to_string(offset + got) +
                                 (r < 0 ? std::string(": ") + std::strerror(errno) : ": unexpected end of file"));
        }
        got += static_cast<size_t>(r);
      }
      buf_offset_ = offset;
    }
    std::memcpy(dst, buf_.data() + (offset - buf_offset_), n);
    return Status::Ok();
  }
  size_t got = 0;
  auto* out = static_cast<uint8_t*>(dst);
  while (got < n) {
    ssize_t r = ::pread(fd_, out + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return Status::IoError(path_ + ": read failed at offset " + std::to_string(offset + got) +
                             (r < 0 ? std::string(": ") + std::strerror(errno) : ": unexpected end of file"));
    got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

}  // namespace tierlm
