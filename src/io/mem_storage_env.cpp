#include "io/mem_storage_env.h"

#include <atomic>
#include <cstring>
#include <functional>

namespace tierlm::io {
namespace {

class MemFile : public RandomAccessFile {
 public:
  MemFile(std::string name, std::shared_ptr<MemStorageEnv::Contents> contents, FileIdentity id,
          std::function<std::shared_ptr<MemStorageEnv::Contents>()> lookup, FileOptions options)
      : name_(std::move(name)), contents_(std::move(contents)), identity_(id), lookup_(std::move(lookup)),
        options_(options) {}

  const std::string& name() const override { return name_; }
  const FileIdentity& identity() const override { return identity_; }

  Status CheckIdentity() override {
    std::shared_ptr<MemStorageEnv::Contents> now = lookup_();
    if (!now) return Status::Corruption(name_ + ": file was deleted since open");
    FileIdentity cur;
    {
      std::lock_guard<std::mutex> lock(now->mu);
      cur = now->identity;
    }
    if (now != contents_ || !(cur == identity_))
      return Status::Corruption(name_ + ": file changed since open (was " + identity_.ToString() + ", now " +
                                cur.ToString() + "); not reading it");
    return Status::Ok();
  }

  Status ReadAt(uint64_t offset, uint64_t len, uint8_t* dst, const IoOptions&) override {
    TIERLM_RETURN_IF_ERROR(CheckReadRange(name_, identity_.size, offset, len));
    if (options_.identity_check == IdentityCheck::kEveryRead) TIERLM_RETURN_IF_ERROR(CheckIdentity());
    std::lock_guard<std::mutex> lock(contents_->mu);
    const uint64_t have = contents_->bytes.size();
    if (offset + len > have)
      return Status::IoError(name_ + ": unexpected end of file reading " + std::to_string(len) +
                             " bytes at offset " + std::to_string(offset));
    if (len) std::memcpy(dst, contents_->bytes.data() + offset, len);
    reads_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(len, std::memory_order_relaxed);
    return Status::Ok();
  }

  FileStats stats() const override {
    FileStats s;
    s.engine = "memory";
    s.reads = reads_.load();
    s.bytes_read = bytes_.load();
    return s;
  }

 private:
  std::string name_;
  std::shared_ptr<MemStorageEnv::Contents> contents_;
  FileIdentity identity_;
  std::function<std::shared_ptr<MemStorageEnv::Contents>()> lookup_;
  FileOptions options_;
  std::atomic<uint64_t> reads_{0}, bytes_{0};
};

class MemSpillFile : public SpillFile {
 public:
  MemSpillFile(std::string name, uint64_t capacity) : name_(std::move(name)), bytes_(capacity, 0) {
    identity_.size = capacity;
  }
  const std::string& name() const override { return name_; }
  const FileIdentity& identity() const override { return identity_; }
  Status CheckIdentity() override { return Status::Ok(); }

  Status ReadAt(uint64_t offset, uint64_t len, uint8_t* dst, const IoOptions&) override {
    TIERLM_RETURN_IF_ERROR(CheckReadRange(name_, identity_.size, offset, len));
    std::lock_guard<std::mutex> lock(mu_);
    if (len) std::memcpy(dst, bytes_.data() + offset, len);
    ++stats_.reads;
    stats_.bytes_read += len;
    return Status::Ok();
  }
  Status WriteAt(uint64_t offset, uint64_t len, const uint8_t* src, const IoOptions&) override {
    TIERLM_RETURN_IF_ERROR(CheckWriteRange(name_, identity_.size, offset, len));
    std::lock_guard<std::mutex> lock(mu_);
    if (len) std::memcpy(bytes_.data() + offset, src, len);
    ++stats_.writes;
    stats_.bytes_written += len;
    return Status::Ok();
  }
  FileStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    FileStats s = stats_;
    s.engine = "memory";
    return s;
  }

 private:
  std::string name_;
  FileIdentity identity_;
  mutable std::mutex mu_;
  std::vector<uint8_t> bytes_;
  FileStats stats_;
};

}  // namespace

Result<std::unique_ptr<SpillFile>> MemStorageEnv::CreateSpillFile(const std::string& dir, uint64_t capacity) {
  return std::unique_ptr<SpillFile>(new MemSpillFile("spill file in " + dir + " (memory)", capacity));
}

void MemStorageEnv::WriteFile(const std::string& path, std::vector<uint8_t> bytes) {
  auto c = std::make_shared<Contents>();
  std::lock_guard<std::mutex> lock(mu_);
  c->identity.size = bytes.size();
  c->identity.inode = next_inode_++;
  c->identity.mtime_nanos = next_mtime_++;
  c->bytes = std::move(bytes);
  files_[path] = std::move(c);
}

Status MemStorageEnv::Truncate(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return Status::NotFound(path + ": no such file");
  std::lock_guard<std::mutex> flock(it->second->mu);
  if (size < it->second->bytes.size()) it->second->bytes.resize(size);
  it->second->identity.size = it->second->bytes.size();
  it->second->identity.mtime_nanos = next_mtime_++;
  return Status::Ok();
}

Status MemStorageEnv::Overwrite(const std::string& path, uint64_t offset, const std::vector<uint8_t>& bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return Status::NotFound(path + ": no such file");
  std::lock_guard<std::mutex> flock(it->second->mu);
  auto& b = it->second->bytes;
  if (offset + bytes.size() > b.size()) b.resize(offset + bytes.size());
  std::memcpy(b.data() + offset, bytes.data(), bytes.size());
  it->second->identity.size = b.size();
  it->second->identity.mtime_nanos = next_mtime_++;
  return Status::Ok();
}

void MemStorageEnv::Delete(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  files_.erase(path);
}

Result<std::unique_ptr<RandomAccessFile>> MemStorageEnv::OpenForRandomRead(const std::string& path,
                                                                           const FileOptions& options) {
  std::shared_ptr<Contents> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return Status::NotFound(path + ": no such file");
    c = it->second;
  }
  FileIdentity id;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    id = c->identity;
  }
  auto lookup = [this, path]() -> std::shared_ptr<Contents> {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(path);
    return it == files_.end() ? nullptr : it->second;
  };
  return std::unique_ptr<RandomAccessFile>(new MemFile(path, std::move(c), id, std::move(lookup), options));
}

}  // namespace tierlm::io
