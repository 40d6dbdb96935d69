#include "model/model_identity.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace tierlm {
namespace {

constexpr uint64_t kWindow = 4096;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status ReadFully(int fd, uint64_t offset, uint64_t len, uint8_t* dst, const std::string& path) {
  while (len > 0) {
    const ssize_t n = ::pread(fd, dst, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return Status::IoError(path + ": cannot read " + std::to_string(len) + " bytes at offset " +
                             std::to_string(offset) + (n < 0 ? std::string(": ") + std::strerror(errno) : ": end of file"));
    dst += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Result<uint64_t> ModelContentIdentity(const gguf::GgufFile& file, const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  XXH3_state_t* state = XXH3_createState();
  if (!state) return Status::ResourceExhausted("model identity: out of memory");
  XXH3_64bits_reset(state);
  const uint64_t size = file.file_size();
  XXH3_64bits_update(state, &size, sizeof size);
  std::vector<uint8_t> buf(std::max<uint64_t>(std::min(file.data_offset(), size), kWindow));
  Status st = ReadFully(fd.get(), 0, std::min(file.data_offset(), size), buf.data(), path);
  if (st.ok()) XXH3_64bits_update(state, buf.data(), std::min(file.data_offset(), size));
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (!st.ok()) break;
    const uint64_t begin = t.file_offset;
    const uint64_t bytes = t.size_bytes;
    const uint64_t starts[3] = {0, bytes / 2 > kWindow / 2 ? bytes / 2 - kWindow / 2 : 0,
                                bytes > kWindow ? bytes - kWindow : 0};
    const int n_windows = bytes <= 3 * kWindow ? 1 : 3;
    for (int w = 0; w < n_windows && st.ok(); ++w) {
      const uint64_t len = n_windows == 1 ? bytes : kWindow;
      if (buf.size() < len) buf.resize(len);
      st = ReadFully(fd.get(), begin + starts[w], len, buf.data(), path);
      if (st.ok()) XXH3_64bits_update(state, buf.data(), len);
    }
  }
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  TIERLM_RETURN_IF_ERROR(st);
  return h;
}

}  // namespace tierlm
