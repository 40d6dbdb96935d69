#include "format/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tierlm::gguf {
namespace {

class Out {
 public:
  explicit Out(std::FILE* f) : f_(f) {}
  bool ok() const { return ok_; }
  uint64_t pos() const { return pos_; }
  void Bytes(const void* p, size_t n) {
    if (ok_ && n && std::fwrite(p, 1, n, f_) != n) ok_ = false;
    pos_ += n;
  }
  template <typename T>
  void Pod(T v) { Bytes(&v, sizeof v); }
  void Str(const std::string& s) {
    Pod<uint64_t>(s.size());
    Bytes(s.data(), s.size());
  }
  void Pad(uint64_t alignment) {
    static const uint8_t zeros[64] = {};
    while (pos_ % alignment) Bytes(zeros, std::min<uint64_t>(sizeof zeros, alignment - pos_ % alignment));
  }

 private:
  std::FILE* f_;
  bool ok_ = true;
  uint64_t pos_ = 0;
};

void WriteValue(Out& o, const Value& v) {
  switch (v.type) {
    case ValueType::kUint8: o.Pod<uint8_t>(v.u64); break;
    case ValueType::kInt8: o.Pod<int8_t>(v.i64); break;
    case ValueType::kUint16: o.Pod<uint16_t>(v.u64); break;
    case ValueType::kInt16: o.Pod<int16_t>(v.i64); break;
    case ValueType::kUint32: o.Pod<uint32_t>(v.u64); break;
    case ValueType::kInt32: o.Pod<int32_t>(v.i64); break;
    case ValueType::kUint64: o.Pod<uint64_t>(v.u64); break;
    case ValueType::kInt64: o.Pod<int64_t>(v.i64); break;
    case ValueType::kFloat32: o.Pod<float>(static_cast<float>(v.f64)); break;
    case ValueType::kFloat64: o.Pod<double>(v.f64); break;
    case ValueType::kBool: o.Pod<uint8_t>(v.u64 ? 1 : 0); break;
    case ValueType::kString: o.Str(v.str); break;
    case ValueType::kArray:
      o.Pod<uint32_t>(static_cast<uint32_t>(v.elem_type));
      o.Pod<uint64_t>(v.items.size());
      for (const auto& it : v.items) WriteValue(o, it);
      break;
  }
}

}  // namespace

void GgufWriter::Set(const std::string& key, Value value) {
  for (auto& kv : metadata_)
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  metadata_.push_back({key, std::move(value)});
}

Status GgufWriter::CheckTensor(const std::string& name, GgmlType type, const std::vector<int64_t>& ne,
                               uint64_t* bytes) const {
  if (ne.empty() || ne.size() > kMaxDims) return Status::InvalidArgument("tensor '" + name + "': 1 to 4 dimensions");
  for (const auto& t : tensors_)
    if (t.name == name) return Status::InvalidArgument("tensor '" + name + "' added twice");
  int64_t n = 1;
  for (int64_t d : ne) {
    if (d <= 0) return Status::InvalidArgument("tensor '" + name + "': dimension must be positive");
    n *= d;
  }
  const auto& tr = TypeTraits(type);
  if (ne[0] % tr.block_size) return Status::InvalidArgument("tensor '" + name + "': row not a multiple of block size");
  *bytes = static_cast<uint64_t>(n / tr.block_size * tr.type_size);
  return Status::Ok();
}

Status GgufWriter::AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> data) {
  uint64_t bytes = 0;
  TIERLM_RETURN_IF_ERROR(CheckTensor(name, type, ne, &bytes));
  if (data.size() != bytes)
    return Status::InvalidArgument("tensor '" + name + "': " + std::to_string(data.size()) + " bytes given, " +
                                   std::to_string(bytes) + " expected");
  tensors_.push_back({name, type, std::move(ne), bytes, std::move(data), nullptr});
  return Status::Ok();
}

Status GgufWriter::AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, Producer producer) {
  uint64_t bytes = 0;
  TIERLM_RETURN_IF_ERROR(CheckTensor(name, type, ne, &bytes));
  tensors_.push_back({name, type, std::move(ne), bytes, {}, std::move(producer)});
  return Status::Ok();
}

Status GgufWriter::Write(const std::string& path, const ProgressFn& progress) const {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status::IoError(tmp + ": cannot create: " + std::strerror(errno));
  Out o(f);
  auto fail = [&](const std::string& what) {
    int err = errno;
    std::fclose(f);
    std::remove(tmp.c_str());
    return Status::IoError(path + ": " + what + ": " + std::strerror(err));
  };

  o.Pod<uint32_t>(kMagic);
  o.Pod<uint32_t>(3);
  o.Pod<uint64_t>(tensors_.size());
  std::vector<KeyValue> meta = metadata_;
  bool has_alignment = false;
  for (const auto& kv : meta) has_alignment |= kv.key == "general.alignment";
  if (alignment_ != kDefaultAlignment && !has_alignment) meta.push_back({"general.alignment", Value::U32(alignment_)});
  o.Pod<uint64_t>(meta.size());
  for (const auto& kv : meta) {
    o.Str(kv.key);
    o.Pod<uint32_t>(static_cast<uint32_t>(kv.value.type));
    WriteValue(o, kv.value);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    o.Str(t.name);
    o.Pod<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) o.Pod<uint64_t>(static_cast<uint64_t>(d));
    o.Pod<uint32_t>(static_cast<uint32_t>(t.type));
    o.Pod<uint64_t>(offset);
    offset += (t.size_bytes + alignment_ - 1) / alignment_ * alignment_;
  }
  o.Pad(alignment_);
  uint64_t total_bytes = 0, written = 0;
  for (const auto& t : tensors_) total_bytes += t.size_bytes;
  if (progress) progress(0, total_bytes);
  std::vector<uint8_t> buf;
  for (const auto& t : tensors_) {
    if (t.producer) {
      buf.assign(t.size_bytes, 0);
      Status st = t.producer(buf.data(), t.size_bytes);
      if (!st.ok()) {
        std::fclose(f);
        std::remove(tmp.c_str());
        return st.WithContext(path + ": tensor '" + t.name + "'");
      }
      o.Bytes(buf.data(), buf.size());
    } else {
      o.Bytes(t.data.data(), t.data.size());
    }
    o.Pad(alignment_);
    if (!o.ok()) return fail("write failed");
    written += t.size_bytes;
    if (progress) progress(written, total_bytes);
  }
  if (!o.ok() || std::fflush(f) != 0) return fail("write failed");
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    return Status::IoError(path + ": close failed: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::IoError(path + ": rename failed: " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace tierlm::gguf
