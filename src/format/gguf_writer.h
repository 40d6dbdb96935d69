// Writes GGUF version 3 files: metadata, tensor directory and aligned tensor data.
//
// Usage: add metadata and tensors (data is copied, or produced later by a callback so a
// multi-GiB model never has to sit in memory), then Write(path). Write goes to
// `path.tmp` and renames on success, so a failed write (full disk) never leaves a
// truncated file under the final name.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/progress.h"
#include "core/status.h"
#include "format/gguf_file.h"

namespace tierlm::gguf {

class GgufWriter {
 public:
  // Fills dst (size_bytes of the tensor) with the tensor's encoded data.
  using Producer = std::function<Status(uint8_t* dst, uint64_t size_bytes)>;

  explicit GgufWriter(uint32_t alignment = kDefaultAlignment) : alignment_(alignment) {}

  void Set(const std::string& key, Value value);
  // ne in ggml order; data must hold the tensor's full byte size.
  Status AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> data);
  Status AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, Producer producer);

  // progress, when set, is called with the tensor bytes written so far and their total
  // (after each tensor).
  Status Write(const std::string& path, const ProgressFn& progress = {}) const;

 private:
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    uint64_t size_bytes;
    std::vector<uint8_t> data;
    Producer producer;
  };
  Status CheckTensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne, uint64_t* bytes) const;

  uint32_t alignment_;
  std::vector<KeyValue> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace tierlm::gguf
