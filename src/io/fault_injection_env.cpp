#include "io/fault_injection_env.h"

#include <algorithm>
#include <map>

namespace tierlm::io {
namespace {

std::string Where(const std::string& name, uint64_t offset, uint64_t len) {
  return name + ": reading " + std::to_string(len) + " bytes at offset " + std::to_string(offset);
}

class FaultFile : public RandomAccessFile {
 public:
  FaultFile(FaultInjectionEnv* env, std::unique_ptr<RandomAccessFile> base) : env_(env), base_(std::move(base)) {}

  ~FaultFile() override {
    // Drain reads still in the base file so their buffers are no longer written to.
    std::vector<ReadId> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, it] : items_)
        if (it.base_id && !it.have_result) ids.push_back(it.base_id);
    }
    std::vector<ReadResult> ignored;
    if (!ids.empty()) (void)base_->Wait(ids, -1, &ignored);
  }

  const std::string& name() const override { return base_->name(); }
  const FileIdentity& identity() const override { return base_->identity(); }
  Status CheckIdentity() override { return base_->CheckIdentity(); }
  FileStats stats() const override { return base_->stats(); }

  Status ReadAt(uint64_t offset, uint64_t len, uint8_t* dst, const IoOptions& options) override {
    const FaultInjectionEnv::Decision d = env_->Decide(offset, len);
    Clock* clock = env_->clock();
    if (d.latency_nanos) clock->SleepUntil(clock->NowNanos() + d.latency_nanos);
    uint64_t bytes = 0;
    return Apply(d, offset, len, dst, options, &bytes);
  }

  ReadId Submit(const ReadRequest& req) override {
    const FaultInjectionEnv::Decision d = env_->Decide(req.offset, req.len);
    const int64_t now = env_->clock()->NowNanos();
    std::lock_guard<std::mutex> lock(mu_);
    const ReadId id = next_id_++;
    Item& it = items_[id];
    it.ready_at = now + d.latency_nanos;
    it.r.id = id;
    it.r.user_data = req.user_data;
    it.r.latency_nanos = d.latency_nanos;
    if (d.fault == FaultInjectionEnv::Fault::kNone) {
      ReadRequest fwd = req;
      fwd.user_data = id;
      it.base_id = base_->Submit(fwd);
      by_base_[it.base_id] = id;
    } else {
      // Faults are decided up front and applied synchronously; only their timing is async.
      it.r.status = Apply(d, req.offset, req.len, req.dst, req.options, &it.r.bytes);
      it.have_result = true;
    }
    return id;
  }

  std::vector<ReadResult> Poll() override {
    Absorb(base_->Poll());
    return TakeReady(nullptr);
  }

  Status Wait(std::span<const ReadId> ids, int64_t timeout_nanos, std::vector<ReadResult>* done) override {
    Clock* clock = env_->clock();
    const int64_t deadline = timeout_nanos < 0 ? INT64_MAX : clock->NowNanos() + timeout_nanos;
    std::vector<ReadId> base_ids;
    int64_t ready_at = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (ReadId id : ids) {
        auto f = items_.find(id);
        if (f == items_.end())
          return Status::InvalidArgument("read id " + std::to_string(id) + " is unknown or already collected");
        if (!f->second.have_result) base_ids.push_back(f->second.base_id);
        ready_at = std::max(ready_at, f->second.ready_at);
      }
    }
    Status st;
    if (!base_ids.empty()) {
      std::vector<ReadResult> got;
      st = base_->Wait(base_ids, timeout_nanos, &got);
      Absorb(std::move(got));
    }
    if (st.ok()) clock->SleepUntil(std::min(ready_at, deadline));
    const size_t before = done->size();
    TakeReady(&ids, done);
    if (done->size() - before != ids.size())
      return Status::IoError(base_->name() + ": timed out waiting for reads");
    return Status::Ok();
  }

 private:
  struct Item {
    ReadId base_id = 0;
    bool have_result = false;
    ReadResult r;
    int64_t ready_at = 0;
  };

  Status Apply(const FaultInjectionEnv::Decision& d, uint64_t offset, uint64_t len, uint8_t* dst,
               const IoOptions& options, uint64_t* bytes) {
    *bytes = 0;
    TIERLM_RETURN_IF_ERROR(CheckReadRange(name(), size(), offset, len));
    switch (d.fault) {
      case FaultInjectionEnv::Fault::kNone:
        TIERLM_RETURN_IF_ERROR(base_->ReadAt(offset, len, dst, options));
        *bytes = len;
        return Status::Ok();
      case FaultInjectionEnv::Fault::kError:
        return Status::IoError(Where(name(), offset, len) + ": injected fault");
      case FaultInjectionEnv::Fault::kShortRead: {
        const uint64_t half = len / 2;
        TIERLM_RETURN_IF_ERROR(base_->ReadAt(offset, half, dst, options));
        *bytes = half;
        return Status::IoError(Where(name(), offset, len) + ": short read (" + std::to_string(half) + " bytes)");
      }
      case FaultInjectionEnv::Fault::kTruncated: {
        const uint64_t have = d.truncate_at > offset ? std::min(len, d.truncate_at - offset) : 0;
        TIERLM_RETURN_IF_ERROR(base_->ReadAt(offset, have, dst, options));
        *bytes = have;
        return Status::IoError(Where(name(), offset, len) + ": unexpected end of file after " +
                               std::to_string(have) + " bytes (file truncated?)");
      }
      case FaultInjectionEnv::Fault::kDiskFull:  // decided for writes only
        break;
    }
    return Status::Internal("unknown fault");
  }

  void Absorb(std::vector<ReadResult> results) {
    std::lock_guard<std::mutex> lock(mu_);
    for (ReadResult& b : results) {
      auto m = by_base_.find(b.id);
      if (m == by_base_.end()) continue;
      Item& it = items_[m->second];
      by_base_.erase(m);
      const int64_t injected = it.r.latency_nanos;
      it.r.status = std::move(b.status);
      it.r.bytes = b.bytes;
      it.r.latency_nanos = injected + b.latency_nanos;
      it.have_result = true;
    }
  }

  // Moves ready results (of `ids` if given) to *out (or returns them).
  std::vector<ReadResult> TakeReady(const std::span<const ReadId>* ids, std::vector<ReadResult>* out = nullptr) {
    std::vector<ReadResult> local;
    std::vector<ReadResult>* dst = out ? out : &local;
    const int64_t now = env_->clock()->NowNanos();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = items_.begin(); it != items_.end();) {
      const bool wanted = !ids || std::find(ids->begin(), ids->end(), it->first) != ids->end();
      if (wanted && it->second.have_result && it->second.ready_at <= now) {
        dst->push_back(std::move(it->second.r));
        it = items_.erase(it);
      } else {
        ++it;
      }
    }
    return local;
  }

  FaultInjectionEnv* env_;
  std::unique_ptr<RandomAccessFile> base_;
  std::mutex mu_;
  ReadId next_id_ = 1;
  std::map<ReadId, Item> items_;
  std::map<ReadId, ReadId> by_base_;  // base id -> our id
};

class FaultSpillFile : public SpillFile {
 public:
  FaultSpillFile(FaultInjectionEnv* env, std::unique_ptr<SpillFile> base) : env_(env), base_(std::move(base)) {}

  const std::string& name() const override { return base_->name(); }
  const FileIdentity& identity() const override { return base_->identity(); }
  Status CheckIdentity() override { return base_->CheckIdentity(); }
  FileStats stats() const override { return base_->stats(); }

  Status ReadAt(uint64_t offset, uint64_t len, uint8_t* dst, const IoOptions& options) override {
    const FaultInjectionEnv::Decision d = env_->Decide(offset, len);
    Sleep(d);
    TIERLM_RETURN_IF_ERROR(CheckReadRange(name(), size(), offset, len));
    switch (d.fault) {
      case FaultInjectionEnv::Fault::kError:
        return Status::IoError(Where(name(), offset, len) + ": injected fault");
      case FaultInjectionEnv::Fault::kShortRead:
      case FaultInjectionEnv::Fault::kTruncated: {
        const uint64_t have = d.fault == FaultInjectionEnv::Fault::kShortRead
                                  ? len / 2
                                  : (d.truncate_at > offset ? std::min(len, d.truncate_at - offset) : 0);
        TIERLM_RETURN_IF_ERROR(base_->ReadAt(offset, have, dst, options));
        return Status::IoError(Where(name(), offset, len) + ": short read (" + std::to_string(have) + " bytes)");
      }
      default:
        return base_->ReadAt(offset, len, dst, options);
    }
  }

  Status WriteAt(uint64_t offset, uint64_t len, const uint8_t* src, const IoOptions& options) override {
    const FaultInjectionEnv::Decision d = env_->DecideWrite(this, offset, len);
    Sleep(d);
    TIERLM_RETURN_IF_ERROR(CheckWriteRange(name(), size(), offset, len));
    const std::string where = name() + ": writing " + std::to_string(len) + " bytes at offset " + std::to_string(offset);
    switch (d.fault) {
      case FaultInjectionEnv::Fault::kError:
        return Status::IoError(where + ": injected write fault");
      case FaultInjectionEnv::Fault::kDiskFull:
        return Status::IoError(where + ": No space left on device");
      case FaultInjectionEnv::Fault::kShortRead:
        TIERLM_RETURN_IF_ERROR(base_->WriteAt(offset, len / 2, src, options));
        return Status::IoError(where + ": short write (" + std::to_string(len / 2) + " bytes)");
      default:
        return base_->WriteAt(offset, len, src, options);
    }
  }

 private:
  void Sleep(const FaultInjectionEnv::Decision& d) {
    Clock* clock = env_->clock();
    if (d.latency_nanos) clock->SleepUntil(clock->NowNanos() + d.latency_nanos);
  }
  FaultInjectionEnv* env_;
  std::unique_ptr<SpillFile> base_;
};

}  // namespace

FaultInjectionEnv::FaultInjectionEnv(StorageEnv* base, Clock* clock)
    : StorageEnvWrapper(base), clock_(clock ? clock : SystemClock()), rng_(0) {}

void FaultInjectionEnv::SetFaults(const FaultSpec& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  spec_ = spec;
  rng_.seed(spec.seed);
}

uint64_t FaultInjectionEnv::spill_bytes_used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pages_.size() * kDirectIoAlignment;
}

FaultCounters FaultInjectionEnv::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

FaultInjectionEnv::Decision FaultInjectionEnv::Decide(uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.reads;
  Decision d;
  d.latency_nanos = spec_.latency_nanos;
  // Draw both dice every read so one fault kind does not shift the other's sequence.
  const bool one_in_error = spec_.error_one_in && rng_() % spec_.error_one_in == 0;
  const bool one_in_short = spec_.short_read_one_in && rng_() % spec_.short_read_one_in == 0;
  const bool in_range = spec_.fail_begin < spec_.fail_end && offset < spec_.fail_end && offset + len > spec_.fail_begin;
  if (one_in_error || in_range) {
    d.fault = Fault::kError;
    ++counters_.injected_errors;
  } else if (offset + len > spec_.truncate_at) {
    d.fault = Fault::kTruncated;
    d.truncate_at = spec_.truncate_at;
    ++counters_.truncated_reads;
  } else if ((one_in_short || (spec_.short_begin < spec_.short_end && offset < spec_.short_end &&
                               offset + len > spec_.short_begin)) &&
             len >= 2) {
    d.fault = Fault::kShortRead;
    ++counters_.short_reads;
  }
  return d;
}

FaultInjectionEnv::Decision FaultInjectionEnv::DecideWrite(const void* file, uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.writes;
  Decision d;
  d.latency_nanos = spec_.latency_nanos;
  const bool one_in_error = spec_.write_error_one_in && rng_() % spec_.write_error_one_in == 0;
  const bool one_in_short = spec_.short_write_one_in && rng_() % spec_.short_write_one_in == 0;
  const bool in_range = spec_.write_fail_begin < spec_.write_fail_end && offset < spec_.write_fail_end &&
                        offset + len > spec_.write_fail_begin;
  if (one_in_error || in_range) {
    d.fault = Fault::kError;
    ++counters_.injected_write_errors;
    return d;
  }
  if (len > 0) {  // pages are counted always, so a limit set later sees what is on disk
    std::vector<uint64_t> fresh;
    for (uint64_t p = offset / kDirectIoAlignment; p <= (offset + len - 1) / kDirectIoAlignment; ++p)
      if (!pages_.count({file, p})) fresh.push_back(p);
    if (spec_.disk_space_bytes != UINT64_MAX &&
        (pages_.size() + fresh.size()) * kDirectIoAlignment > spec_.disk_space_bytes) {
      d.fault = Fault::kDiskFull;
      ++counters_.disk_full_writes;
      return d;
    }
    if (!one_in_short)
      for (uint64_t p : fresh) pages_.insert({file, p});
  }
  if (one_in_short && len >= 2) {
    d.fault = Fault::kShortRead;
    ++counters_.short_writes;
  }
  return d;
}

Result<std::unique_ptr<SpillFile>> FaultInjectionEnv::CreateSpillFile(const std::string& dir, uint64_t capacity) {
  TIERLM_ASSIGN_OR_RETURN(std::unique_ptr<SpillFile> base, target()->CreateSpillFile(dir, capacity));
  return std::unique_ptr<SpillFile>(new FaultSpillFile(this, std::move(base)));
}

Result<std::unique_ptr<RandomAccessFile>> FaultInjectionEnv::OpenForRandomRead(const std::string& path,
                                                                               const FileOptions& options) {
  TIERLM_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> base, target()->OpenForRandomRead(path, options));
  return std::unique_ptr<RandomAccessFile>(new FaultFile(this, std::move(base)));
}

}  // namespace tierlm::io
