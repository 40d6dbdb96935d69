#include "format/gguf_file.h"

#include <cstring>
#include <limits>

namespace tierlm::gguf {
namespace {

constexpr int kMaxArrayDepth = 4;
constexpr uint64_t kMaxStringBytes = 1ull << 30;

// Sequential reader over a ByteSource that turns every short read into a Corruption
// status naming the file, the section and the offset.
class Cursor {
 public:
  Cursor(ByteSource& src, const std::string& name) : src_(src), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return src_.size() - pos_; }

  Status Fail(const std::string& what) const {
    return Status::Corruption(name_ + ": " + what + " (at byte offset " + std::to_string(pos_) + ")");
  }

  Status Bytes(void* dst, uint64_t n, const char* what) {
    if (n > remaining())
      return Status::Corruption(name_ + ": file is truncated: " + what + " needs " + std::to_string(n) +
                                " bytes at offset " + std::to_string(pos_) + " but the file has " +
                                std::to_string(src_.size()) + " bytes");
    Status st = src_.Read(pos_, dst, static_cast<size_t>(n));
    if (!st.ok()) return st.WithContext(name_ + ": reading " + what);
    pos_ += n;
    return Status::Ok();
  }

  template <typename T>
  Status Pod(T* out, const char* what) { return Bytes(out, sizeof(T), what); }

  Status String(std::string* out, const char* what) {
    uint64_t len = 0;
    TIERLM_RETURN_IF_ERROR(Pod(&len, what));
    if (len > remaining() || len > kMaxStringBytes)
      return Fail("file is truncated or corrupt: " + std::string(what) + " has length " + std::to_string(len) +
                  ", beyond the end of the file");
    out->resize(static_cast<size_t>(len));
    return Bytes(out->data(), len, what);
  }

 private:
  ByteSource& src_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

// Reads one value of scalar or string type `type` into v.
Status ReadScalar(Cursor& c, ValueType type, Value* v, const std::string& key) {
  v->type = type;
  const char* what = "metadata value";
  switch (type) {
    case ValueType::kUint8: { uint8_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->u64 = x; return Status::Ok(); }
    case ValueType::kInt8: { int8_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->i64 = x; return Status::Ok(); }
    case ValueType::kUint16: { uint16_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->u64 = x; return Status::Ok(); }
    case ValueType::kInt16: { int16_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->i64 = x; return Status::Ok(); }
    case ValueType::kUint32: { uint32_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->u64 = x; return Status::Ok(); }
    case ValueType::kInt32: { int32_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->i64 = x; return Status::Ok(); }
    case ValueType::kUint64: { uint64_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->u64 = x; return Status::Ok(); }
    case ValueType::kInt64: { int64_t x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->i64 = x; return Status::Ok(); }
    case ValueType::kFloat32: { float x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->f64 = x; return Status::Ok(); }
    case ValueType::kFloat64: { double x; TIERLM_RETURN_IF_ERROR(c.Pod(&x, what)); v->f64 = x; return Status::Ok(); }
    case ValueType::kBool: {
      uint8_t x;
      TIERLM_RETURN_IF_ERROR(c.Pod(&x, what));
      if (x > 1) return c.Fail("metadata key '" + key + "': bool value " + std::to_string(x) + " is neither 0 nor 1");
      v->u64 = x;
      return Status::Ok();
    }
    case ValueType::kString: return c.String(&v->str, "metadata string value");
    case ValueType::kArray: break;
  }
  return c.Fail("metadata key '" + key + "': invalid value type");
}

Status ReadValue(Cursor& c, uint32_t raw_type, Value* v, const std::string& key, int depth) {
  if (raw_type > static_cast<uint32_t>(ValueType::kFloat64))
    return c.Fail("metadata key '" + key + "' has unknown value type " + std::to_string(raw_type));
  const auto type = static_cast<ValueType>(raw_type);
  if (type != ValueType::kArray) return ReadScalar(c, type, v, key);
  if (depth >= kMaxArrayDepth) return c.Fail("metadata key '" + key + "': arrays nested too deeply");
  uint32_t elem_raw = 0;
  uint64_t count = 0;
  TIERLM_RETURN_IF_ERROR(c.Pod(&elem_raw, "array element type"));
  TIERLM_RETURN_IF_ERROR(c.Pod(&count, "array length"));
  if (elem_raw > static_cast<uint32_t>(ValueType::kFloat64))
    return c.Fail("metadata key '" + key + "': array has unknown element type " + std::to_string(elem_raw));
  const auto elem = static_cast<ValueType>(elem_raw);
  // Every element needs at least this many bytes: bounds the count before allocating.
  const uint64_t min_elem = elem == ValueType::kString ? 8 : elem == ValueType::kArray ? 12 : ScalarSize(elem);
  if (count > c.remaining() / min_elem)
    return c.Fail("file is truncated or corrupt: metadata key '" + key + "': array of " + std::to_string(count) + " " + ValueTypeName(elem) +
                  " elements does not fit in the rest of the file");
  v->type = ValueType::kArray;
  v->elem_type = elem;
  v->items.resize(static_cast<size_t>(count));
  for (auto& item : v->items) TIERLM_RETURN_IF_ERROR(ReadValue(c, elem_raw, &item, key, depth + 1));
  return Status::Ok();
}

bool MulOverflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

std::string TensorInfo::ShapeString() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "]";
}

Result<GgufFile> GgufFile::Open(const std::string& path) {
  auto src = FileByteSource::Open(path);
  if (!src.ok()) return src.status();
  return Parse(**src, path);
}

Result<GgufFile> GgufFile::Parse(ByteSource& source, const std::string& name) {
  GgufFile f;
  f.name_ = name;
  f.file_size_ = source.size();
  Cursor c(source, name);

  uint32_t magic = 0;
  if (source.size() < 4) return Status::Corruption(name + ": not a GGUF file: only " + std::to_string(source.size()) + " bytes");
  TIERLM_RETURN_IF_ERROR(c.Pod(&magic, "magic"));
  if (magic != kMagic) {
    char m[5] = {};
    std::memcpy(m, &magic, 4);
    for (char& ch : m) if (ch && (ch < 32 || ch > 126)) ch = '?';
    return Status::Corruption(name + ": not a GGUF file: magic is '" + std::string(m) + "', expected 'GGUF'");
  }
  TIERLM_RETURN_IF_ERROR(c.Pod(&f.version_, "version"));
  if (f.version_ != 2 && f.version_ != 3)
    return Status::Unsupported(name + ": GGUF version " + std::to_string(f.version_) +
                               " is not supported (versions 2 and 3 are)");
  uint64_t n_tensors = 0, n_kv = 0;
  TIERLM_RETURN_IF_ERROR(c.Pod(&n_tensors, "tensor count"));
  TIERLM_RETURN_IF_ERROR(c.Pod(&n_kv, "metadata count"));
  // A key-value pair needs >= 12 bytes (key length + type); a tensor info >= 24.
  if (n_kv > c.remaining() / 12)
    return c.Fail("file is truncated or corrupt: metadata count " + std::to_string(n_kv) +
                  " is larger than the file could hold");
  if (n_tensors > c.remaining() / 24)
    return c.Fail("file is truncated or corrupt: tensor count " + std::to_string(n_tensors) +
                  " is larger than the file could hold");

  f.metadata_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    KeyValue kv;
    TIERLM_RETURN_IF_ERROR(c.String(&kv.key, "metadata key"));
    uint32_t type = 0;
    TIERLM_RETURN_IF_ERROR(c.Pod(&type, "metadata value type"));
    TIERLM_RETURN_IF_ERROR(ReadValue(c, type, &kv.value, kv.key, 0));
    if (f.metadata_index_.count(kv.key)) return c.Fail("duplicate metadata key '" + kv.key + "'");
    f.metadata_index_[kv.key] = f.metadata_.size();
    f.metadata_.push_back(std::move(kv));
  }

  if (const Value* a = f.Find("general.alignment")) {
    if (a->type != ValueType::kUint32)
      return Status::Corruption(name + ": general.alignment has type " + ValueTypeName(a->type) + ", expected u32");
    if (a->u64 == 0 || (a->u64 & (a->u64 - 1)) != 0)
      return Status::Corruption(name + ": general.alignment " + std::to_string(a->u64) + " is not a power of two");
    f.alignment_ = a->u64;
  }

  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    TIERLM_RETURN_IF_ERROR(c.String(&t.name, "tensor name"));
    const std::string where = "tensor '" + t.name + "'";
    uint32_t n_dims = 0;
    TIERLM_RETURN_IF_ERROR(c.Pod(&n_dims, "tensor dimension count"));
    if (n_dims < 1 || n_dims > kMaxDims)
      return c.Fail(where + " has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    t.n_dims = static_cast<int>(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      TIERLM_RETURN_IF_ERROR(c.Pod(&ne, "tensor dimension"));
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return c.Fail(where + " has invalid dimension " + std::to_string(d) + " = " + std::to_string(ne));
      t.ne[d] = static_cast<int64_t>(ne);
    }
    uint32_t type_id = 0;
    TIERLM_RETURN_IF_ERROR(c.Pod(&type_id, "tensor type"));
    auto traits = GetTypeTraits(type_id);
    if (!traits) return c.Fail(where + " has unknown ggml type id " + std::to_string(type_id));
    t.type = static_cast<GgmlType>(type_id);
    TIERLM_RETURN_IF_ERROR(c.Pod(&t.offset, "tensor data offset"));

    int64_t n_el = 1;
    for (int d = 0; d < kMaxDims; ++d)
      if (MulOverflows(n_el, t.ne[d], &n_el))
        return c.Fail(where + " shape " + t.ShapeString() + " has too many elements (overflow)");
    if (t.ne[0] % traits->block_size != 0)
      return c.Fail(where + " row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                    std::string(traits->name) + " block size " + std::to_string(traits->block_size));
    int64_t bytes = 0;
    if (MulOverflows(n_el / traits->block_size, traits->type_size, &bytes))
      return c.Fail(where + " byte size overflows");
    t.size_bytes = static_cast<uint64_t>(bytes);
    if (t.offset % f.alignment_ != 0)
      return c.Fail(where + " data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                    std::to_string(f.alignment_));
    if (f.tensor_index_.count(t.name)) return c.Fail("duplicate tensor name '" + t.name + "'");
    f.tensor_index_[t.name] = f.tensors_.size();
    f.tensors_.push_back(std::move(t));
  }

  const uint64_t header_end = c.pos();
  f.data_offset_ = (header_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (n_tensors > 0 && f.data_offset_ > f.file_size_)
    return Status::Corruption(name + ": file is truncated: tensor data section would start at offset " +
                              std::to_string(f.data_offset_) + " but the file has " + std::to_string(f.file_size_) + " bytes");
  const uint64_t data_size = f.file_size_ >= f.data_offset_ ? f.file_size_ - f.data_offset_ : 0;
  for (auto& t : f.tensors_) {
    if (t.offset > data_size || t.size_bytes > data_size - t.offset)
      return Status::Corruption(name + ": file is truncated or corrupt: tensor '" + t.name + "' data [" +
                                std::to_string(f.data_offset_ + t.offset) + ", " +
                                std::to_string(f.data_offset_ + t.offset + t.size_bytes) +
                                ") ends past the end of the file (" + std::to_string(f.file_size_) + " bytes)");
    t.file_offset = f.data_offset_ + t.offset;
  }
  return f;
}

const Value* GgufFile::Find(const std::string& key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const TensorInfo* GgufFile::FindTensor(const std::string& tname) const {
  auto it = tensor_index_.find(tname);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status Missing(const std::string& file, const std::string& key) {
  return Status::NotFound(file + ": required metadata key '" + key + "' is missing");
}
Status WrongType(const std::string& file, const std::string& key, const Value& v, const char* want) {
  return Status::InvalidArgument(file + ": metadata key '" + key + "' has type " + ValueTypeName(v.type) +
                                 (v.type == ValueType::kArray ? std::string("[") + ValueTypeName(v.elem_type) + "]" : "") +
                                 ", expected " + want);
}
bool IsSigned(ValueType t) {
  return t == ValueType::kInt8 || t == ValueType::kInt16 || t == ValueType::kInt32 || t == ValueType::kInt64;
}
}  // namespace

Result<int64_t> GgufFile::GetI64(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (!v->is_integer()) return WrongType(name_, key, *v, "an integer");
  if (IsSigned(v->type)) return v->i64;
  if (v->u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return Status::InvalidArgument(name_ + ": metadata key '" + key + "' value " + std::to_string(v->u64) + " is too large");
  return static_cast<int64_t>(v->u64);
}

Result<uint64_t> GgufFile::GetU64(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (!v->is_integer()) return WrongType(name_, key, *v, "an integer");
  if (IsSigned(v->type)) {
    if (v->i64 < 0) return Status::InvalidArgument(name_ + ": metadata key '" + key + "' is negative (" + std::to_string(v->i64) + ")");
    return static_cast<uint64_t>(v->i64);
  }
  return v->u64;
}

Result<uint32_t> GgufFile::GetU32(const std::string& key) const {
  auto r = GetU64(key);
  if (!r.ok()) return r.status();
  if (*r > std::numeric_limits<uint32_t>::max())
    return Status::InvalidArgument(name_ + ": metadata key '" + key + "' value " + std::to_string(*r) + " is too large");
  return static_cast<uint32_t>(*r);
}

Result<float> GgufFile::GetF32(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (v->is_float()) return static_cast<float>(v->f64);
  if (v->is_integer()) return IsSigned(v->type) ? static_cast<float>(v->i64) : static_cast<float>(v->u64);
  return WrongType(name_, key, *v, "a number");
}

Result<bool> GgufFile::GetBool(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (v->type != ValueType::kBool) return WrongType(name_, key, *v, "bool");
  return v->u64 != 0;
}

Result<std::string> GgufFile::GetString(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (v->type != ValueType::kString) return WrongType(name_, key, *v, "string");
  return v->str;
}

Result<std::vector<std::string>> GgufFile::GetStringArray(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (v->type != ValueType::kArray || v->elem_type != ValueType::kString) return WrongType(name_, key, *v, "array of strings");
  std::vector<std::string> out;
  out.reserve(v->items.size());
  for (const auto& it : v->items) out.push_back(it.str);
  return out;
}

Result<std::vector<float>> GgufFile::GetF32Array(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (v->type != ValueType::kArray || !(v->elem_type == ValueType::kFloat32 || v->elem_type == ValueType::kFloat64))
    return WrongType(name_, key, *v, "array of floats");
  std::vector<float> out;
  out.reserve(v->items.size());
  for (const auto& it : v->items) out.push_back(static_cast<float>(it.f64));
  return out;
}

Result<std::vector<int64_t>> GgufFile::GetIntArray(const std::string& key) const {
  const Value* v = Find(key);
  if (!v) return Missing(name_, key);
  if (v->type != ValueType::kArray) return WrongType(name_, key, *v, "array of integers");
  std::vector<int64_t> out;
  out.reserve(v->items.size());
  for (const auto& it : v->items) {
    if (!it.is_integer()) return WrongType(name_, key, *v, "array of integers");
    out.push_back(IsSigned(it.type) ? it.i64 : static_cast<int64_t>(it.u64));
  }
  return out;
}

Result<uint32_t> GgufFile::GetU32Or(const std::string& key, uint32_t dflt) const {
  return Find(key) ? GetU32(key) : Result<uint32_t>(dflt);
}
Result<float> GgufFile::GetF32Or(const std::string& key, float dflt) const {
  return Find(key) ? GetF32(key) : Result<float>(dflt);
}
Result<bool> GgufFile::GetBoolOr(const std::string& key, bool dflt) const {
  return Find(key) ? GetBool(key) : Result<bool>(dflt);
}
Result<std::string> GgufFile::GetStringOr(const std::string& key, const std::string& dflt) const {
  return Find(key) ? GetString(key) : Result<std::string>(dflt);
}

}  // namespace tierlm::gguf
