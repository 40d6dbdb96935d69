// MemStorageEnv: files held in memory (leveldb NewMemEnv), for tests of every tier.
//
// Files are written, replaced and truncated through the env; an open file keeps a
// reference to the contents it opened, so replacing or truncating the path is seen by
// its identity check exactly as on a real file system.
//
// Thread safety: every method may be called from any thread.
// REQUIRES: the env outlives the files it opens.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/storage_env.h"

namespace tierlm::io {

class MemStorageEnv : public StorageEnv {
 public:
  // Creates or replaces `path` (a new identity, as a rename over it would give).
  void WriteFile(const std::string& path, std::vector<uint8_t> bytes);
  // Shrinks `path` in place (same inode, new size and mtime). kNotFound if absent.
  Status Truncate(const std::string& path, uint64_t size);
  // Overwrites bytes in place (same inode and size, new mtime). kNotFound if absent.
  Status Overwrite(const std::string& path, uint64_t offset, const std::vector<uint8_t>& bytes);
  void Delete(const std::string& path);

  Result<std::unique_ptr<RandomAccessFile>> OpenForRandomRead(const std::string& path,
                                                              const FileOptions& options = {}) override;
  // A spill file held in memory (zeros until written); `dir` only names it.
  Result<std::unique_ptr<SpillFile>> CreateSpillFile(const std::string& dir, uint64_t capacity) override;

  struct Contents {
    std::mutex mu;
    std::vector<uint8_t> bytes;
    FileIdentity identity;
  };

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Contents>> files_;
  uint64_t next_inode_ = 1;
  int64_t next_mtime_ = 1;
};

}  // namespace tierlm::io
