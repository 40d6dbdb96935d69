#include "tiers/lowbit_expert_cache.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "kernels/quant.h"

namespace tierlm {
namespace {

constexpr char kMagic[8] = {'T', 'L', 'M', 'L', 'O', 'W', 'B', 'T'};
constexpr uint64_t kHeaderBytes = 4096;
constexpr uint64_t kAlign = 4096;
// Header fields after the magic, in order (all u64 but version and type).
struct HeaderFields {
  uint32_t version = kLowbitCacheVersion;
  uint32_t type = 0;
  uint64_t model_size = 0;
  int64_t model_mtime = 0;
  uint64_t model_header_hash = 0;
  uint64_t n_entries = 0;
  uint64_t table_offset = 0;
  uint64_t table_bytes = 0;
  uint64_t table_hash = 0;
  uint64_t data_offset = 0;
  uint64_t file_size = 0;
};
constexpr size_t kHeaderFieldBytes = 8 + 4 + 4 + 8 * 9;  // magic .. file_size; then u64 header hash
// Fixed part of a table record after the name: type, n_in, n_out, offset, size, checksum.
constexpr uint64_t kRecordFixed = 4 + 4 + 8 * 5;

uint64_t AlignUp(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

class Writer {
 public:
  template <typename T>
  void Pod(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof v);
  }
  std::vector<uint8_t> bytes;
};

class Reader {
 public:
  Reader(const uint8_t* p, uint64_t n) : p_(p), n_(n) {}
  template <typename T>
  bool Pod(T* v) {
    if (n_ - pos_ < sizeof(T)) return false;
    std::memcpy(v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool Bytes(uint64_t len, std::string* s) {
    if (n_ - pos_ < len) return false;
    s->assign(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return true;
  }
  uint64_t pos() const { return pos_; }

 private:
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
};

std::vector<uint8_t> EncodeHeader(const HeaderFields& h) {
  Writer w;
  for (char c : kMagic) w.Pod<char>(c);
  w.Pod(h.version);
  w.Pod(h.type);
  w.Pod(h.model_size);
  w.Pod(h.model_mtime);
  w.Pod(h.model_header_hash);
  w.Pod(h.n_entries);
  w.Pod(h.table_offset);
  w.Pod(h.table_bytes);
  w.Pod(h.table_hash);
  w.Pod(h.data_offset);
  w.Pod(h.file_size);
  w.Pod<uint64_t>(LowbitHash(w.bytes.data(), w.bytes.size()));
  w.bytes.resize(kHeaderBytes, 0);
  return w.bytes;
}

std::vector<uint8_t> EncodeTable(const std::vector<LowbitEntry>& entries) {
  Writer w;
  for (const auto& e : entries) {
    w.Pod<uint32_t>(static_cast<uint32_t>(e.name.size()));
    w.bytes.insert(w.bytes.end(), e.name.begin(), e.name.end());
    w.Pod<uint32_t>(static_cast<uint32_t>(e.type));
    w.Pod<uint32_t>(0);
    w.Pod<int64_t>(e.n_in);
    w.Pod<int64_t>(e.n_out);
    w.Pod<uint64_t>(e.offset);
    w.Pod<uint64_t>(e.size);
    w.Pod<uint64_t>(e.checksum);
  }
  return w.bytes;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The temporary file a build writes; removed on any error.
class TmpFile {
 public:
  TmpFile(std::string path, const LowbitBuildOptions& options) : path_(std::move(path)), options_(options) {}
  ~TmpFile() {
    if (fd_ >= 0) ::close(fd_);
    if (created_ && !kept_) ::unlink(path_.c_str());
  }
  Status Create() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return Status::IoError(path_ + ": cannot create: " + std::strerror(errno));
    created_ = true;
    return Status::Ok();
  }
  Status WriteAt(uint64_t offset, const uint8_t* data, uint64_t len) {
    if (options_.write_fault) TIERLM_RETURN_IF_ERROR(options_.write_fault(offset, len).WithContext(path_));
    while (len > 0) {
      const ssize_t n = ::pwrite(fd_, data, len, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : ENOSPC;
        const Status st = Status::IoError(path_ + ": write of " + std::to_string(len) + " bytes at offset " +
                                          std::to_string(offset) + " failed: " + std::strerror(err));
        return err == ENOSPC ? Status::ResourceExhausted(st.message()) : st;
      }
      data += n;
      offset += static_cast<uint64_t>(n);
      len -= static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }
  Status Finish(uint64_t size, const std::string& final_path) {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return Status::IoError(path_ + ": cannot extend to " + std::to_string(size) + " bytes: " + std::strerror(errno));
    if (::fsync(fd_) != 0) return Status::IoError(path_ + ": fsync failed: " + std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return Status::IoError(path_ + ": close failed: " + std::strerror(errno));
    if (std::rename(path_.c_str(), final_path.c_str()) != 0)
      return Status::IoError(final_path + ": rename from " + path_ + " failed: " + std::strerror(errno));
    kept_ = true;
    // Make the rename durable (best effort: some file systems refuse fsync on a directory).
    const std::string dir = std::filesystem::path(final_path).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
    return Status::Ok();
  }

 private:
  std::string path_;
  const LowbitBuildOptions& options_;
  int fd_ = -1;
  bool created_ = false;
  bool kept_ = false;
};

struct Unit {
  const gguf::TensorInfo* stacked;
  int64_t expert;
};

}  // namespace

uint64_t LowbitHash(const void* data, size_t len) { return XXH3_64bits(data, len); }

std::string LowbitModelIdentity::ToString() const {
  return "size " + std::to_string(size) + ", mtime " + std::to_string(mtime_nanos) + ", header hash " + Hex(header_hash);
}

std::string DefaultLowbitCachePath(const std::string& model_path) { return model_path + ".tierlm-lowbit"; }

Result<LowbitModelIdentity> ComputeModelIdentity(const gguf::GgufFile& model, io::RandomAccessFile& model_file) {
  LowbitModelIdentity id;
  id.size = model_file.identity().size;
  id.mtime_nanos = model_file.identity().mtime_nanos;
  const uint64_t n = std::min<uint64_t>(model.data_offset(), id.size);
  std::vector<uint8_t> head(n);
  if (n > 0) TIERLM_RETURN_IF_ERROR(model_file.ReadAt(0, n, head.data()));
  id.header_hash = LowbitHash(head.data(), head.size());
  return id;
}

Result<LowbitBuildStats> LowbitExpertCache::Build(const gguf::GgufFile& model, io::RandomAccessFile& model_file,
                                                  const std::string& out_path, ThreadPool* pool,
                                                  const LowbitBuildOptions& options) {
  const auto t_start = std::chrono::steady_clock::now();
  const GgmlType lt = options.type;
  const int64_t lblock = TypeTraits(lt).block_size;
  auto identity = ComputeModelIdentity(model, model_file);
  if (!identity.ok()) return identity.status();

  // Units and the table, so every entry's offset is known before any data is written.
  std::vector<Unit> units;
  std::vector<LowbitEntry> entries;
  std::vector<std::string> skipped_tensors;
  for (const auto& t : model.tensors()) {
    if (!EndsWith(t.name, "_exps.weight") || t.n_dims != 3) continue;
    if (!TypeTraits(t.type).supported)
      return Status::Unsupported(model.name() + ": tensor '" + t.name + "' has type " +
                                 std::string(TypeName(t.type)) + ", which the low-bit cache cannot requantize");
    if (t.ne[0] % lblock != 0) {
      // No copy for this tensor: its experts are always computed from the full copy.
      skipped_tensors.push_back(t.name);
      continue;
    }
    for (int64_t e = 0; e < t.ne[2]; ++e) {
      units.push_back({&t, e});
      LowbitEntry le;
      le.name = t.name + "#" + std::to_string(e);
      le.type = lt;
      le.n_in = t.ne[0];
      le.n_out = t.ne[1];
      le.size = static_cast<uint64_t>(le.n_out) * static_cast<uint64_t>(RowBytes(lt, le.n_in));
      entries.push_back(std::move(le));
    }
  }
  const uint64_t table_bytes = EncodeTable(entries).size();
  const uint64_t data_offset = AlignUp(kHeaderBytes + table_bytes);
  uint64_t end = data_offset;
  for (auto& e : entries) {
    e.offset = end;
    end = AlignUp(end + e.size);
  }
  const uint64_t file_size = end;

  const std::string tmp_path = out_path + ".tmp." + std::to_string(::getpid());
  TmpFile tmp(tmp_path, options);
  TIERLM_RETURN_IF_ERROR(tmp.Create());

  LowbitBuildStats stats;
  std::vector<uint8_t> src, dst;
  if (options.progress) options.progress(0, units.size());
  for (size_t u = 0; u < units.size(); ++u) {
    const gguf::TensorInfo& t = *units[u].stacked;
    LowbitEntry& le = entries[u];
    const uint64_t slice_bytes = t.size_bytes / static_cast<uint64_t>(t.ne[2]);
    const uint64_t src_row_bytes = static_cast<uint64_t>(RowBytes(t.type, t.ne[0]));
    src.resize(slice_bytes);
    dst.resize(le.size);
    Status st = model_file.ReadAt(t.file_offset + slice_bytes * static_cast<uint64_t>(units[u].expert), slice_bytes,
                                  src.data());
    if (!st.ok()) return st.WithContext(model.name() + ": expert '" + le.name + "'");
    const uint64_t dst_row_bytes = static_cast<uint64_t>(RowBytes(lt, le.n_in));
    auto rows = [&](int64_t begin, int64_t end_row) {
      static thread_local std::vector<float> row;
      row.resize(static_cast<size_t>(le.n_in));
      for (int64_t r = begin; r < end_row; ++r) {
        DequantizeRow(t.type, src.data() + r * src_row_bytes, row.data(), le.n_in);
        QuantizeRow(lt, row.data(), dst.data() + r * dst_row_bytes, le.n_in);
      }
    };
    if (pool != nullptr && pool->size() > 1) {
      pool->ParallelForDynamic(le.n_out, 16, rows);
    } else {
      rows(0, le.n_out);
    }
    le.checksum = LowbitHash(dst.data(), dst.size());
    TIERLM_RETURN_IF_ERROR(tmp.WriteAt(le.offset, dst.data(), dst.size()));
    stats.source_bytes += slice_bytes;
    if (options.progress) options.progress(u + 1, units.size());
  }
  const std::vector<uint8_t> table = EncodeTable(entries);
  HeaderFields h;
  h.type = static_cast<uint32_t>(lt);
  h.model_size = identity->size;
  h.model_mtime = identity->mtime_nanos;
  h.model_header_hash = identity->header_hash;
  h.n_entries = entries.size();
  h.table_offset = kHeaderBytes;
  h.table_bytes = table.size();
  h.table_hash = LowbitHash(table.data(), table.size());
  h.data_offset = data_offset;
  h.file_size = file_size;
  const std::vector<uint8_t> header = EncodeHeader(h);
  if (!table.empty()) TIERLM_RETURN_IF_ERROR(tmp.WriteAt(kHeaderBytes, table.data(), table.size()));
  TIERLM_RETURN_IF_ERROR(tmp.WriteAt(0, header.data(), header.size()));
  TIERLM_RETURN_IF_ERROR(tmp.Finish(file_size, out_path));
  stats.entries = static_cast<int64_t>(entries.size());
  stats.skipped_tensors = std::move(skipped_tensors);
  stats.cache_bytes = file_size;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return stats;
}

Result<LowbitExpertCache::Opened> LowbitExpertCache::Open(io::StorageEnv* env, const std::string& path,
                                                          const LowbitModelIdentity& model,
                                                          const io::FileOptions& file_options) {
  Opened out;
  auto file = env->OpenForRandomRead(path, file_options);
  if (!file.ok()) {
    if (file.status().code() == StatusCode::kNotFound) {
      out.state = LowbitCacheState::kMissing;
      out.reason = path + ": no such file";
      return out;
    }
    return file.status();
  }
  auto corrupt = [&](const std::string& what) { return Status::Corruption(path + ": low-bit expert cache: " + what); };
  io::RandomAccessFile& f = **file;
  const uint64_t size = f.size();
  if (size < kHeaderBytes)
    return corrupt("file has " + std::to_string(size) + " bytes, less than its " + std::to_string(kHeaderBytes) +
                   "-byte header (truncated)");
  std::vector<uint8_t> hb(kHeaderBytes);
  TIERLM_RETURN_IF_ERROR(f.ReadAt(0, kHeaderBytes, hb.data()));
  if (std::memcmp(hb.data(), kMagic, sizeof kMagic) != 0) return corrupt("bad magic (not a tierlm low-bit cache)");
  Reader r(hb.data() + sizeof kMagic, kHeaderBytes - sizeof kMagic);
  HeaderFields h;
  r.Pod(&h.version);
  if (h.version != kLowbitCacheVersion) {
    out.state = LowbitCacheState::kStale;
    out.reason = path + ": cache version " + std::to_string(h.version) + ", this tierlm writes version " +
                 std::to_string(kLowbitCacheVersion);
    return out;
  }
  r.Pod(&h.type);
  r.Pod(&h.model_size);
  r.Pod(&h.model_mtime);
  r.Pod(&h.model_header_hash);
  r.Pod(&h.n_entries);
  r.Pod(&h.table_offset);
  r.Pod(&h.table_bytes);
  r.Pod(&h.table_hash);
  r.Pod(&h.data_offset);
  r.Pod(&h.file_size);
  uint64_t header_hash = 0;
  r.Pod(&header_hash);
  if (header_hash != LowbitHash(hb.data(), kHeaderFieldBytes))
    return corrupt("header checksum mismatch (stored " + Hex(header_hash) + ", computed " +
                   Hex(LowbitHash(hb.data(), kHeaderFieldBytes)) + ")");
  const LowbitModelIdentity built_for{h.model_size, h.model_mtime, h.model_header_hash};
  if (!(built_for == model)) {
    out.state = LowbitCacheState::kStale;
    std::string field = built_for.size != model.size           ? "size"
                        : built_for.mtime_nanos != model.mtime_nanos ? "mtime"
                                                                     : "header hash";
    out.reason = path + ": built for another model file (" + field + " differs: cache has " + built_for.ToString() +
                 "; model has " + model.ToString() + ")";
    return out;
  }
  const GgmlType type = static_cast<GgmlType>(h.type);
  if (type != GgmlType::kLQ2) return corrupt("unknown low-bit type id " + std::to_string(h.type));
  if (h.file_size != size)
    return corrupt("header says the file has " + std::to_string(h.file_size) + " bytes, it has " +
                   std::to_string(size) + (size < h.file_size ? " (truncated)" : ""));
  if (h.table_offset != kHeaderBytes || h.table_bytes > size - kHeaderBytes || h.data_offset % kAlign != 0 ||
      h.data_offset < h.table_offset + h.table_bytes || h.data_offset > size)
    return corrupt("entry table bounds (offset " + std::to_string(h.table_offset) + ", " +
                   std::to_string(h.table_bytes) + " bytes, data at " + std::to_string(h.data_offset) + ")");
  if (h.n_entries > h.table_bytes / (4 + kRecordFixed))
    return corrupt("entry count " + std::to_string(h.n_entries) + " does not fit the table");
  std::vector<uint8_t> tb(h.table_bytes);
  if (!tb.empty()) TIERLM_RETURN_IF_ERROR(f.ReadAt(h.table_offset, tb.size(), tb.data()));
  if (LowbitHash(tb.data(), tb.size()) != h.table_hash) return corrupt("entry table checksum mismatch");

  auto cache = std::unique_ptr<LowbitExpertCache>(new LowbitExpertCache());
  cache->path_ = path;
  cache->type_ = type;
  cache->model_ = model;
  Reader t(tb.data(), tb.size());
  uint64_t prev_end = h.data_offset;
  for (uint64_t i = 0; i < h.n_entries; ++i) {
    const std::string where = "entry " + std::to_string(i);
    uint32_t name_len = 0, etype = 0, pad = 0;
    LowbitEntry e;
    if (!t.Pod(&name_len) || name_len > 4096 || !t.Bytes(name_len, &e.name) || !t.Pod(&etype) || !t.Pod(&pad) ||
        !t.Pod(&e.n_in) || !t.Pod(&e.n_out) || !t.Pod(&e.offset) || !t.Pod(&e.size) || !t.Pod(&e.checksum))
      return corrupt(where + " runs past the entry table");
    e.type = static_cast<GgmlType>(etype);
    const std::string named = where + " '" + e.name + "'";
    if (e.type != type) return corrupt(named + ": type id " + std::to_string(etype));
    const int64_t block = TypeTraits(type).block_size;
    if (e.n_in <= 0 || e.n_out <= 0 || e.n_in % block != 0 || e.n_in > (int64_t{1} << 32) ||
        e.n_out > (int64_t{1} << 32) ||
        e.size != static_cast<uint64_t>(e.n_out) * static_cast<uint64_t>(RowBytes(type, e.n_in)))
      return corrupt(named + ": shape [" + std::to_string(e.n_in) + ", " + std::to_string(e.n_out) +
                     "] does not match its size " + std::to_string(e.size));
    if (e.offset % kAlign != 0 || e.offset < prev_end || e.offset > size || e.size > size - e.offset)
      return corrupt(named + ": data at offset " + std::to_string(e.offset) + " (" + std::to_string(e.size) +
                     " bytes) is misaligned, overlaps another entry or lies outside the file");
    prev_end = e.offset + e.size;
    if (!cache->index_.emplace(e.name, cache->entries_.size()).second) return corrupt(named + ": duplicate name");
    cache->entries_.push_back(std::move(e));
  }
  if (t.pos() != tb.size()) return corrupt("entry table has trailing bytes");
  cache->file_ = std::move(*file);
  out.state = LowbitCacheState::kValid;
  out.cache = std::move(cache);
  return out;
}

Result<LowbitExpertCache::OpenOrBuildResult> LowbitExpertCache::OpenOrBuild(io::StorageEnv* env,
                                                                            const gguf::GgufFile& model,
                                                                            const std::string& model_path,
                                                                            ThreadPool* pool,
                                                                            const OpenOrBuildOptions& options) {
  auto model_file = env->OpenForRandomRead(model_path);
  if (!model_file.ok()) return model_file.status();
  auto identity = ComputeModelIdentity(model, **model_file);
  if (!identity.ok()) return identity.status();

  std::vector<std::string> candidates = {options.path.empty() ? DefaultLowbitCachePath(model_path) : options.path};
  if (!options.fallback_dir.empty())
    candidates.push_back(
        (std::filesystem::path(options.fallback_dir) / std::filesystem::path(candidates[0]).filename()).string());

  OpenOrBuildResult result;
  for (size_t i = 0; i < candidates.size(); ++i) {
    auto opened = Open(env, candidates[i], *identity, options.file_options);
    std::string reason;
    if (!opened.ok()) {
      const StatusCode code = opened.status().code();
      if (code != StatusCode::kCorruption && code != StatusCode::kIoError) return opened.status();
      // Corrupt, or cannot be opened (e.g. its directory is not one): build it (again).
      reason = (code == StatusCode::kCorruption ? "corrupt: " : "unreadable: ") + opened.status().message();
    } else if (opened->state == LowbitCacheState::kValid) {
      result.cache = std::move(opened->cache);
      return result;
    } else {
      reason = (opened->state == LowbitCacheState::kMissing ? "missing: " : "stale: ") + opened->reason;
    }
    if (i == 0) result.reason = reason;
  }
  Status last;
  for (const std::string& path : candidates) {
    auto stats = Build(model, **model_file, path, pool, options.build);
    if (!stats.ok()) {
      last = stats.status();
      if (last.code() == StatusCode::kIoError) continue;  // e.g. a read-only directory: try the fallback
      return last;
    }
    auto opened = Open(env, path, *identity, options.file_options);
    if (!opened.ok()) return opened.status();
    if (opened->state != LowbitCacheState::kValid)
      return Status::Internal(path + ": low-bit cache just built does not open: " + opened->reason);
    result.cache = std::move(opened->cache);
    result.built = true;
    result.stats = *stats;
    return result;
  }
  return last;
}

const LowbitEntry* LowbitExpertCache::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Status LowbitExpertCache::VerifyEntry(const LowbitEntry& entry, const uint8_t* data) const {
  const uint64_t got = LowbitHash(data, entry.size);
  if (got == entry.checksum) return Status::Ok();
  return Status::Corruption(path_ + ": low-bit entry '" + entry.name + "' at offset " + std::to_string(entry.offset) +
                            ": checksum mismatch (stored " + Hex(entry.checksum) + ", computed " + Hex(got) + ")");
}

Status LowbitExpertCache::ReadEntry(const LowbitEntry& entry, uint8_t* dst) {
  TIERLM_RETURN_IF_ERROR(file_->ReadAt(entry.offset, entry.size, dst, {io::IoClass::kExpert}));
  return VerifyEntry(entry, dst);
}

}  // namespace tierlm
