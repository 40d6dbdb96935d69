// A parsed GGUF file: header, metadata and tensor directory (not the tensor data).
//
// Parsing validates every count, string, shape and offset against the file size before
// use, so a corrupt or truncated file yields a Status naming the file and the fault.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "format/byte_source.h"
#include "format/ggml_type.h"
#include "format/gguf_value.h"

namespace tierlm::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr int kMaxDims = 4;

struct TensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  int n_dims = 0;
  std::array<int64_t, kMaxDims> ne = {1, 1, 1, 1};  // ggml order: ne[0] varies fastest
  uint64_t offset = 0;       // from the start of the data section
  uint64_t size_bytes = 0;   // bytes of data
  uint64_t file_offset = 0;  // absolute offset in the file

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  std::string ShapeString() const;  // "[64, 512]"
};

struct KeyValue {
  std::string key;
  Value value;
};

class GgufFile {
 public:
  // Parses the header of a GGUF image of `source->size()` bytes. `name` (usually the
  // path) prefixes every error message.
  static Result<GgufFile> Parse(ByteSource& source, const std::string& name);
  // Opens and parses the file at `path`.
  static Result<GgufFile> Open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return file_size_; }
  const std::string& name() const { return name_; }

  const std::vector<KeyValue>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  const Value* Find(const std::string& key) const;
  const TensorInfo* FindTensor(const std::string& name) const;

  // Typed getters: NotFound if absent, InvalidArgument (naming key and types) if the
  // value has another type or does not fit. Integer getters accept any integer type
  // whose value fits.
  Result<uint64_t> GetU64(const std::string& key) const;
  Result<uint32_t> GetU32(const std::string& key) const;
  Result<int64_t> GetI64(const std::string& key) const;
  Result<float> GetF32(const std::string& key) const;
  Result<bool> GetBool(const std::string& key) const;
  Result<std::string> GetString(const std::string& key) const;
  Result<std::vector<std::string>> GetStringArray(const std::string& key) const;
  Result<std::vector<float>> GetF32Array(const std::string& key) const;
  Result<std::vector<int64_t>> GetIntArray(const std::string& key) const;

  // Same with a default when the key is absent (a present key of the wrong type is
  // still an error).
  Result<uint32_t> GetU32Or(const std::string& key, uint32_t dflt) const;
  Result<float> GetF32Or(const std::string& key, float dflt) const;
  Result<bool> GetBoolOr(const std::string& key, bool dflt) const;
  Result<std::string> GetStringOr(const std::string& key, const std::string& dflt) const;

 private:
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  uint64_t file_size_ = 0;
  std::vector<KeyValue> metadata_;
  std::map<std::string, size_t> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace tierlm::gguf
