// The low-bit expert cache: a compact copy of every MoE expert in a tierlm file beside the
// model (HOBBIT-style fallback). When an expert is not resident and reading its full copy
// would stall, the MoE FFN can compute with its low-bit copy instead.
//
// Build requantizes each expert's slice of every stacked `*_exps` tensor (units named
// "name#e", as SliceExperts names them) from its GGUF type to a low-bit type (kLQ2), one
// expert at a time (memory: one slice and its copy, never the model), rows in parallel.
//
// File layout (little-endian), version 1:
//   [0, 4096)      header: magic "TLMLOWBT", version, low-bit type, the model's identity
//                  (file size, mtime, xxh3 of its GGUF bytes before the tensor data, i.e.
//                  header + metadata + tensor table), entry count, table offset and
//                  bytes, xxh3 of the table, data offset, file size, xxh3 of the header
//   [4096, ...)    entry table: per entry u32 name length, name, u32 type, u32 padding (0), i64 n_in,
//                  i64 n_out, u64 offset, u64 size, u64 xxh3 of the entry's bytes
//   data           each entry at a 4 KiB-aligned offset (O_DIRECT reads), the file padded
//                  to a multiple of 4 KiB
// The file is written to a temporary name, fsynced and renamed: a failed or interrupted
// build never leaves a partial cache under the cache's name.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/progress.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "format/ggml_type.h"
#include "format/gguf_file.h"
#include "io/storage_env.h"

namespace tierlm {

inline constexpr uint32_t kLowbitCacheVersion = 1;

// What a cache was built from; a cache whose identity differs from the model's is stale.
struct LowbitModelIdentity {
  uint64_t size = 0;
  int64_t mtime_nanos = 0;
  uint64_t header_hash = 0;  // xxh3 of the model's bytes [0, data_offset)
  bool operator==(const LowbitModelIdentity&) const = default;
  std::string ToString() const;
};

// The identity of an open model file (its size and mtime as captured at open).
Result<LowbitModelIdentity> ComputeModelIdentity(const gguf::GgufFile& model, io::RandomAccessFile& model_file);

struct LowbitEntry {
  std::string name;  // "blk.3.ffn_up_exps.weight#5"
  GgmlType type = GgmlType::kLQ2;
  int64_t n_in = 0;   // elements per row
  int64_t n_out = 0;  // rows
  uint64_t offset = 0;  // in the cache file, a multiple of 4096
  uint64_t size = 0;    // bytes: n_out * RowBytes(type, n_in)
  uint64_t checksum = 0;  // xxh3 of the size bytes
};

// 64-bit XXH3 of bytes (the cache's checksum; ~10+ GB/s).
uint64_t LowbitHash(const void* data, size_t len);

struct LowbitBuildOptions {
  GgmlType type = GgmlType::kLQ2;
  // Test seam: called before each write of len bytes at offset of the temporary file; a
  // non-OK status fails that write as if the OS had (e.g. a full disk).
  std::function<Status(uint64_t offset, uint64_t len)> write_fault;
  // Called with the expert slices requantized so far and their total (one entry each).
  ProgressFn progress;
};

struct LowbitBuildStats {
  int64_t entries = 0;
  uint64_t source_bytes = 0;  // expert bytes read from the model
  uint64_t cache_bytes = 0;   // the cache file's size
  double seconds = 0.0;
  // Stacked expert tensors left without copies: their rows are not a multiple of the
  // low-bit block (e.g. Qwen1.5-MoE's 1408-wide down projection); those experts always
  // compute from their full copies.
  std::vector<std::string> skipped_tensors;
};

// Why Open did not return a usable cache, when it is not an error.
enum class LowbitCacheState {
  kValid,    // opened; matches the model
  kMissing,  // no file at the path
  kStale,    // built for another model file (or by another cache version): rebuild
};

// The default cache path: "<model path>.tierlm-lowbit".
std::string DefaultLowbitCachePath(const std::string& model_path);

class LowbitExpertCache {
 public:
  // Writes the cache of `model` (read through model_file) to out_path.
  // Errors: kUnsupported (an expert's type cannot be dequantized), kIoError naming the file (read, write,
  // fsync, rename). On error no file is left at out_path or at the temporary name.
  static Result<LowbitBuildStats> Build(const gguf::GgufFile& model, io::RandomAccessFile& model_file,
                                        const std::string& out_path, ThreadPool* pool,
                                        const LowbitBuildOptions& options = {});

  struct Opened {
    LowbitCacheState state = LowbitCacheState::kMissing;
    std::string reason;                       // for kMissing / kStale: why, naming the field
    std::unique_ptr<LowbitExpertCache> cache;  // set when kValid
  };
  // Opens the cache at path through env and checks it against `model`.
  // Errors: kCorruption naming the file and the field (magic, header checksum, table
  // bounds or checksum, entry bounds, file size), kIoError.
  static Result<Opened> Open(io::StorageEnv* env, const std::string& path, const LowbitModelIdentity& model,
                             const io::FileOptions& file_options = {});

  struct OpenOrBuildOptions {
    std::string path;              // empty: DefaultLowbitCachePath(model_path)
    std::string fallback_dir;      // used when the default path's directory is not writable
    LowbitBuildOptions build;
    io::FileOptions file_options;  // for the opened cache file
  };
  struct OpenOrBuildResult {
    std::unique_ptr<LowbitExpertCache> cache;
    bool built = false;   // false: an existing valid cache was opened
    std::string reason;   // when built: why ("missing", "stale: ...", "corrupt: ...")
    LowbitBuildStats stats;
  };
  // Opens the cache; builds it (again) when it is missing, stale, corrupt or cannot be
  // opened. Tries options.path (or the default), then fallback_dir/<its file name>: the
  // first valid cache is used; else the first place a build succeeds (a build failing
  // with kIoError, e.g. an unwritable directory, moves on to the fallback).
  static Result<OpenOrBuildResult> OpenOrBuild(io::StorageEnv* env, const gguf::GgufFile& model,
                                               const std::string& model_path, ThreadPool* pool,
                                               const OpenOrBuildOptions& options = {});

  const std::string& path() const { return path_; }
  GgmlType type() const { return type_; }
  const LowbitModelIdentity& model_identity() const { return model_; }
  const std::vector<LowbitEntry>& entries() const { return entries_; }
  // The entry of unit `name` ("blk.0.ffn_up_exps.weight#3"), or nullptr.
  const LowbitEntry* Find(const std::string& name) const;
  // The open cache file, for the caller's own (O_DIRECT, async) reads of entries.
  io::RandomAccessFile& file() { return *file_; }

  // kCorruption naming the file, entry and checksums if data (entry.size bytes) does not
  // match the entry's checksum. Call after every read of an entry.
  Status VerifyEntry(const LowbitEntry& entry, const uint8_t* data) const;
  // Reads entry into dst (entry.size bytes) and verifies it.
  Status ReadEntry(const LowbitEntry& entry, uint8_t* dst);

 private:
  std::string path_;
  GgmlType type_ = GgmlType::kLQ2;
  LowbitModelIdentity model_;
  std::vector<LowbitEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::unique_ptr<io::RandomAccessFile> file_;
};

}  // namespace tierlm
