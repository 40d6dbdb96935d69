// Random-access read of a byte image (a file or a memory buffer) for parsers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"

namespace tierlm {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at offset into dst. REQUIRES: offset + n <= size().
  virtual Status Read(uint64_t offset, void* dst, size_t n) = 0;
};

// Bytes in memory (not owned; must outlive the source).
class MemoryByteSource : public ByteSource {
 public:
  MemoryByteSource(const void* data, uint64_t size) : data_(static_cast<const uint8_t*>(data)), size_(size) {}
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, void* dst, size_t n) override;

 private:
  const uint8_t* data_;
  uint64_t size_;
};

// A file read with pread(); buffered for the many small reads of header parsing.
class FileByteSource : public ByteSource {
 public:
  static Result<std::unique_ptr<FileByteSource>> Open(const std::string& path);
  ~FileByteSource() override;
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, void* dst, size_t n) override;

 private:
  FileByteSource(int fd, uint64_t size, std::string path) : fd_(fd), size_(size), path_(std::move(path)) {}
  int fd_;
  uint64_t size_;
  std::string path_;
  std::string buf_;
  uint64_t buf_offset_ = 0;
};

}  // namespace tierlm
