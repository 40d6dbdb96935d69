#include "io/storage_env.h"

#include <algorithm>
#include <chrono>

#include "io/clock.h"

namespace tierlm::io {

const char* IoClassName(IoClass c) {
  switch (c) {
    case IoClass::kWeight: return "weight";
    case IoClass::kExpert: return "expert";
    case IoClass::kKv: return "kv";
  }
  return "?";
}

std::string FileIdentity::ToString() const {
  return "size " + std::to_string(size) + ", mtime " + std::to_string(mtime_nanos) + ", inode " +
         std::to_string(inode);
}

Status CheckReadRange(const std::string& name, uint64_t file_size, uint64_t offset, uint64_t len) {
  if (offset > file_size || len > file_size - offset)
    return Status::OutOfRange(name + ": read of " + std::to_string(len) + " bytes at offset " +
                              std::to_string(offset) + " ends past the end of the file (" +
                              std::to_string(file_size) + " bytes)");
  return Status::Ok();
}

Status CheckWriteRange(const std::string& name, uint64_t file_size, uint64_t offset, uint64_t len) {
  if (offset > file_size || len > file_size - offset)
    return Status::OutOfRange(name + ": write of " + std::to_string(len) + " bytes at offset " +
                              std::to_string(offset) + " ends past the end of the file (" +
                              std::to_string(file_size) + " bytes)");
  return Status::Ok();
}

// ---- ReadCompletions ----

ReadId ReadCompletions::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  const ReadId id = next_id_++;
  pending_.insert(id);
  return id;
}

void ReadCompletions::Complete(ReadResult r) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(r.id);
    completed_.push_back(std::move(r));
    cv_.notify_all();  // under the lock: a waiter may destroy *this once it sees the result
  }
}

void ReadCompletions::WaitNonePending() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return pending_.empty(); });
}

std::vector<ReadResult> ReadCompletions::TakeAll() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ReadResult> out;
  out.swap(completed_);
  return out;
}

size_t ReadCompletions::outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size() + completed_.size();
}

Status ReadCompletions::Wait(std::span<const ReadId> ids, int64_t timeout_nanos, std::vector<ReadResult>* done) {
  std::unique_lock<std::mutex> lock(mu_);
  auto known = [&](ReadId id) {
    return pending_.count(id) != 0 ||
           std::any_of(completed_.begin(), completed_.end(), [&](const ReadResult& r) { return r.id == id; });
  };
  for (ReadId id : ids)
    if (!known(id)) return Status::InvalidArgument("read id " + std::to_string(id) + " is unknown or already collected");
  auto all_done = [&] {
    for (ReadId id : ids)
      if (pending_.count(id) != 0) return false;
    return true;
  };
  bool ok = true;
  if (timeout_nanos < 0) {
    cv_.wait(lock, all_done);
  } else {
    ok = cv_.wait_for(lock, std::chrono::nanoseconds(timeout_nanos), all_done);
  }
  // Hand over whichever of ids completed.
  for (auto it = completed_.begin(); it != completed_.end();) {
    if (std::find(ids.begin(), ids.end(), it->id) != ids.end()) {
      done->push_back(std::move(*it));
      it = completed_.erase(it);
    } else {
      ++it;
    }
  }
  if (!ok) return Status::IoError("timed out after " + std::to_string(timeout_nanos) + " ns waiting for reads");
  return Status::Ok();
}

// ---- RandomAccessFile defaults: synchronous reads completed at submission ----

namespace {

// Runs `op` (a whole read or write of len bytes) now and completes it at once.
template <typename Op>
ReadId CompleteNow(ReadCompletions& completions, uint64_t user_data, uint64_t len, Op op) {
  const ReadId id = completions.Start();
  const int64_t t0 = SystemClock()->NowNanos();
  ReadResult r;
  r.id = id;
  r.user_data = user_data;
  r.status = op();
  r.bytes = r.status.ok() ? len : 0;
  r.latency_nanos = SystemClock()->NowNanos() - t0;
  completions.Complete(std::move(r));
  return id;
}

}  // namespace

ReadId RandomAccessFile::Submit(const ReadRequest& request) {
  return CompleteNow(completions_, request.user_data, request.len,
                     [&] { return ReadAt(request.offset, request.len, request.dst, request.options); });
}

ReadId SpillFile::SubmitWrite(const WriteRequest& request) {
  return CompleteNow(completions_, request.user_data, request.len,
                     [&] { return WriteAt(request.offset, request.len, request.src, request.options); });
}

Result<std::unique_ptr<SpillFile>> StorageEnv::CreateSpillFile(const std::string& dir, uint64_t) {
  return Status::Unsupported(dir + ": this storage has no spill files");
}

std::vector<ReadResult> RandomAccessFile::Poll() { return completions_.TakeAll(); }

Status RandomAccessFile::Wait(std::span<const ReadId> ids, int64_t timeout_nanos, std::vector<ReadResult>* done) {
  return completions_.Wait(ids, timeout_nanos, done);
}

FileStats RandomAccessFile::stats() const {
  FileStats s;
  s.engine = "sync";
  return s;
}

}  // namespace tierlm::io
