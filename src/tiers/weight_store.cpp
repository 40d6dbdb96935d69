#include "tiers/weight_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tierlm {

TensorPin& TensorPin::operator=(TensorPin&& o) noexcept {
  if (this != &o) {
    Reset();
    data_ = o.data_;
    size_ = o.size_;
    owner_ = o.owner_;
    token_ = o.token_;
    o.data_ = nullptr;
    o.owner_ = nullptr;
  }
  return *this;
}

void TensorPin::Reset() {
  if (owner_) owner_->Release(token_);
  owner_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

Result<std::unique_ptr<InMemoryWeightStore>> InMemoryWeightStore::Open(const gguf::GgufFile& file,
                                                                     const ProgressFn& progress) {
  std::unique_ptr<InMemoryWeightStore> store(new InMemoryWeightStore());
  store->data_offset_ = file.data_offset();
  store->data_bytes_ = file.file_size() > file.data_offset() ? file.file_size() - file.data_offset() : 0;
  // Only the bytes up to the end of the last tensor are needed.
  uint64_t end = 0;
  for (const auto& t : file.tensors()) end = std::max(end, t.offset + t.size_bytes);
  store->data_bytes_ = std::min(store->data_bytes_, end);
  if (store->data_bytes_ == 0) return store;

  TIERLM_ASSIGN_OR_RETURN(store->mem_, MappedMemory::Create(store->data_bytes_, file.name() + ": the weights"));
  store->base_ = store->mem_.data();

  int fd = ::open(file.name().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(file.name() + ": cannot open: " + std::strerror(errno));
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  uint64_t got = 0;
  constexpr uint64_t kChunk = 8 << 20;
  if (progress) progress(0, store->data_bytes_);
  while (got < store->data_bytes_) {
    const size_t want = static_cast<size_t>(std::min(kChunk, store->data_bytes_ - got));
    ssize_t r = ::pread(fd, store->base_ + got, want, static_cast<off_t>(store->data_offset_ + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = errno;
      ::close(fd);
      return Status::IoError(file.name() + ": reading tensor data at offset " +
                             std::to_string(store->data_offset_ + got) + ": " +
                             (r < 0 ? std::strerror(err) : "unexpected end of file"));
    }
    // Drop the page-cache copy behind us so the weights are held once.
    ::posix_fadvise(fd, static_cast<off_t>(store->data_offset_ + got), r, POSIX_FADV_DONTNEED);
    got += static_cast<uint64_t>(r);
    if (progress) progress(got, store->data_bytes_);
  }
  ::close(fd);
  return store;
}

Result<TensorPin> InMemoryWeightStore::Acquire(const gguf::TensorInfo& t) {
  if (t.offset + t.size_bytes > data_bytes_)
    return Status::Internal("tensor '" + t.name + "' lies outside the loaded data section");
  return TensorPin(base_ + t.offset, t.size_bytes, nullptr, 0);
}

WeightStoreStats InMemoryWeightStore::Stats() const {
  WeightStoreStats s;
  s.resident_bytes = data_bytes_;
  s.bytes_read = data_bytes_;
  return s;
}

}  // namespace tierlm
