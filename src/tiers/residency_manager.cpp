#include "tiers/residency_manager.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace tierlm {

// ---- ResidencyPin ----

ResidencyPin& ResidencyPin::operator=(ResidencyPin&& o) noexcept {
  if (this != &o) {
    Reset();
    manager_ = o.manager_;
    id_ = o.id_;
    data_ = o.data_;
    size_ = o.size_;
    writable_ = o.writable_;
    o.manager_ = nullptr;
    o.data_ = nullptr;
  }
  return *this;
}

void ResidencyPin::Reset() {
  if (manager_) manager_->Unpin(id_);
  manager_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  writable_ = false;
}

EntryId ResidencyPin::Detach() {
  manager_ = nullptr;
  data_ = nullptr;
  return id_;
}

// ---- ResidencyManager ----

Result<std::unique_ptr<ResidencyManager>> ResidencyManager::Create(const ResidencyOptions& options,
                                                                   std::unique_ptr<EvictionPolicy> policy) {
  if (!policy) return Status::InvalidArgument("ResidencyManager needs an eviction policy");
  TIERLM_ASSIGN_OR_RETURN(std::unique_ptr<Arena> arena, Arena::Create(options.budget_bytes));
  return std::unique_ptr<ResidencyManager>(new ResidencyManager(options, std::move(arena), std::move(policy)));
}

ResidencyManager::ResidencyManager(const ResidencyOptions& options, std::unique_ptr<Arena> arena,
                                   std::unique_ptr<EvictionPolicy> policy)
    : options_(options), clock_(options.clock ? options.clock : io::SystemClock()), arena_(std::move(arena)),
      policy_(std::move(policy)) {
  stats_.capacity_bytes = arena_->capacity();
}

ResidencyManager::~ResidencyManager() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!reading_.empty()) {
    const EntryId id = reading_.front();
    (void)DriveIo(lock, id);
    if (!reading_.empty() && reading_.front() == id && !driver_busy_) {
      // The I/O did not finish in time; wait without limit, the buffer is ours.
      std::vector<io::ReadResult> got;
      io::RandomAccessFile* f = entries_[id].spec.file;
      const io::ReadId rid = entries_[id].read_id;
      lock.unlock();
      (void)f->Wait({&rid, 1}, -1, &got);
      lock.lock();
      for (auto& r : got) Apply(f, std::move(r));
    }
  }
#ifndef NDEBUG
  for (const Entry& e : entries_) assert(e.pins == 0 && "ResidencyManager destroyed with live pins");
#endif
}

Result<EntryId> ResidencyManager::Register(const EntrySpec& spec) {
  if (!spec.file) return Status::InvalidArgument("'" + spec.name + "': entry has no home file");
  io::SpillFile* spill = nullptr;
  if (spec.writable) {
    spill = dynamic_cast<io::SpillFile*>(spec.file);
    if (!spill)
      return Status::InvalidArgument("'" + spec.name + "': a writable entry needs a spill file as its home, not " +
                                     spec.file->name());
    if (spec.offset % io::kDirectIoAlignment != 0 || io::AlignUp(spec.offset + spec.size) > spec.file->size())
      return Status::InvalidArgument(spec.file->name() + ": writable '" + spec.name + "' (" +
                                     std::to_string(spec.size) + " bytes at offset " + std::to_string(spec.offset) +
                                     ") must start on a 4 KiB boundary and its 4 KiB pages must lie in the file");
  }
  if (spec.size == 0) return Status::InvalidArgument("'" + spec.name + "': entry is empty");
  const uint64_t fsize = spec.file->size();
  if (spec.offset > fsize || spec.size > fsize - spec.offset)
    return Status::InvalidArgument(spec.file->name() + ": '" + spec.name + "' (" + std::to_string(spec.size) +
                                   " bytes at offset " + std::to_string(spec.offset) +
                                   ") lies outside the file (" + std::to_string(fsize) + " bytes)");
  Entry e;
  e.spec = spec;
  e.read_offset = io::AlignDown(spec.offset);
  const uint64_t read_end = std::min(io::AlignUp(spec.offset + spec.size), fsize);
  e.read_len = read_end - e.read_offset;
  e.slot_bytes = io::AlignUp(e.read_len, Arena::kGranule);
  e.spill = spill;
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back(std::move(e));
  return static_cast<EntryId>(entries_.size() - 1);
}

std::string ResidencyManager::Describe(const Entry& e) const {
  if (e.spec.cls == EntryClass::kKv)
    return "kv block '" + e.spec.name + "' (" + std::to_string(e.spec.size) + " bytes at offset " +
           std::to_string(e.spec.offset) + " of " + e.spec.file->name() + ")";
  const char* what = "tensor";
  return std::string(what) + " '" + e.spec.name + "' (" + EntryClassName(e.spec.cls) + ", " +
         std::to_string(e.spec.size) + " bytes at offset " + std::to_string(e.spec.offset) + " of " +
         e.spec.file->name() + ")";
}

Result<ResidencyPin> ResidencyManager::Acquire(EntryId id) { return AcquireImpl(id, false); }

Result<ResidencyPin> ResidencyManager::AcquireForWrite(EntryId id) { return AcquireImpl(id, true); }

Result<ResidencyPin> ResidencyManager::AcquireImpl(EntryId id, bool for_write) {
  std::unique_lock<std::mutex> lock(mu_);
  if (id >= entries_.size()) return Status::InvalidArgument("entry id " + std::to_string(id) + " is not registered");
  Entry& e = entries_[id];
  if (for_write && !e.spill) return Status::InvalidArgument(Describe(e) + ": not writable");
  ClassStats& cs = stats_.per_class[static_cast<int>(e.spec.cls)];
  ++cs.acquires;
  bool missed = false, stalled = false, cold = false;
  int64_t waited = 0;
  uint64_t my_seq = 0;  // a demand read whose failure is ours to report
  auto miss = [&] {
    if (!missed) ++cs.misses;
    missed = true;
  };
  auto wait_for = [&](EntryId target) -> Status {
    if (!stalled) ++cs.stalls;
    stalled = true;
    const int64_t t0 = clock_->NowNanos();
    Status st = DriveIo(lock, target);
    const int64_t dt = clock_->NowNanos() - t0;
    cs.stall_nanos += dt;
    waited += dt;
    return st;
  };
  for (;;) {
    Harvest();
    if (!e.lost.ok()) return e.lost;
    switch (e.state) {
      case EntryState::kWriting:  // the bytes are in the slot; a change re-dirties it
      case EntryState::kResident: {
        if (!missed) {
          ++cs.hits;
          if (e.awaiting_use) ++cs.prefetch_hits;
        }
        if (cold) {
          ++cs.demand_misses;
          cs.demand_miss_nanos += waited;
        }
        if (e.awaiting_use) ++cs.prefetches_used;
        e.awaiting_use = false;
        e.announced = false;
        ++e.pins;
        if (for_write) {
          e.dirty = true;
          ++e.dirty_gen;
        }
        policy_->OnAccess(id);
        return ResidencyPin(this, id, arena_->At(e.slot) + (e.spec.offset - e.read_offset), e.spec.size, for_write);
      }
      case EntryState::kReading: {
        miss();
        if (e.demand_read) my_seq = e.read_seq;
        Status st = wait_for(id);
        if (!st.ok()) return st.WithContext(Describe(e));
        break;
      }
      case EntryState::kAbsent: {
        if (my_seq && e.failed_seq == my_seq) return e.error;
        if (!missed) cold = true;
        miss();
        uint64_t slot = 0;
        const Admit a = MakeRoom(id, Mode::kDemand, &slot);
        if (a == Admit::kImpossible)
          return Status::ResourceExhausted(Describe(e) + ": needs " + std::to_string(e.slot_bytes) +
                                           " bytes but the budget is " + std::to_string(arena_->capacity()) +
                                           " bytes, " + std::to_string(forever_bytes_) + " of them pinned for good");
        if (a == Admit::kLater) {
          if (!reading_.empty()) {
            Status st = wait_for(reading_.front());
            if (!st.ok()) return st.WithContext(Describe(e));
            break;
          }
          uint64_t pinned = 0;
          for (const Entry& o : entries_)
            if (o.pins > 0) pinned += o.slot_bytes;
          return Status::ResourceExhausted(Describe(e) + ": no room for " + std::to_string(e.slot_bytes) +
                                           " bytes: live pins hold " + std::to_string(pinned) + " of the " +
                                           std::to_string(arena_->capacity()) + "-byte budget (largest free run " +
                                           std::to_string(arena_->allocator().largest_free_run()) + ")");
        }
        if (e.spill && !e.written) {
          // Never written back: nothing to read; it starts as zeros.
          std::memset(arena_->At(slot), 0, e.slot_bytes);
          e.slot = slot;
          e.state = EntryState::kResident;
          policy_->OnInsert(id);
          break;
        }
        StartRead(id, slot, Mode::kDemand);
        my_seq = e.read_seq;
        break;
      }
    }
  }
}

std::vector<Admit> ResidencyManager::Prefetch(std::span<const EntryId> ids) {
  std::vector<Admit> out;
  out.reserve(ids.size());
  std::lock_guard<std::mutex> lock(mu_);
  Harvest();
  bool later = false;
  for (EntryId id : ids) {
    if (id >= entries_.size()) {
      out.push_back(Admit::kImpossible);
      continue;
    }
    if (later) {
      out.push_back(Admit::kLater);
      continue;
    }
    if (entries_[id].state != EntryState::kAbsent) {
      // Resident already: announced as upcoming, so other prefetches leave it be.
      if (entries_[id].state == EntryState::kResident || entries_[id].state == EntryState::kWriting)
        entries_[id].announced = true;
      out.push_back(Admit::kOk);
      continue;
    }
    if (entries_[id].spill && (!entries_[id].written || !entries_[id].lost.ok())) {
      out.push_back(Admit::kOk);  // nothing on disk to read ahead
      continue;
    }
    uint64_t slot = 0;
    const Admit a = MakeRoom(id, Mode::kPrefetch, &slot);
    if (a == Admit::kOk) StartRead(id, slot, Mode::kPrefetch);
    if (a == Admit::kLater) later = true;
    out.push_back(a);
  }
  return out;
}

void ResidencyManager::Unpin(EntryId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[id];
    assert(e.pins > 0 && "Unpin without a pin");
    if (e.pins > 0 && --e.pins == 0 && e.state != EntryState::kAbsent) policy_->OnRelease(id);
  }
  cv_.notify_all();
}

Admit ResidencyManager::MakeRoom(EntryId id, Mode mode, uint64_t* slot) {
  const Entry& e = entries_[id];
  if (e.slot_bytes > arena_->capacity() - forever_bytes_) return Admit::kImpossible;
  uint64_t writing = 0;  // bytes whose write-back this call started
  for (;;) {
    if (auto s = arena_->Allocate(e.slot_bytes)) {
      *slot = *s;
      return Admit::kOk;
    }
    // Write-backs that will free enough once done: wait for them rather than evict more.
    if (writing >= e.slot_bytes) return Admit::kLater;
    Evicted ev = EvictOne(mode, /*allow_awaiting=*/false, id);
    // A demand read may displace a prefetched entry not used yet (a wasted prefetch).
    if (ev == Evicted::kNone && mode == Mode::kDemand) ev = EvictOne(mode, /*allow_awaiting=*/true, id);
    if (ev == Evicted::kNone) return Admit::kLater;
    if (ev == Evicted::kWriting) writing += entries_[reading_.back()].slot_bytes;
  }
}

ResidencyManager::Evicted ResidencyManager::EvictOne(Mode mode, bool allow_awaiting, EntryId except) {
  bool found = false;
  EntryId victim = 0;
  policy_->VisitVictims([&](EntryId v) {
    const Entry& c = entries_[v];
    if (v == except || c.state != EntryState::kResident || c.pins > 0 ||
        ((c.awaiting_use || c.announced) && !allow_awaiting) || policy_->PinnedForever(v))
      return true;
    victim = v;
    found = true;
    return false;
  });
  if (!found) return Evicted::kNone;
  if (entries_[victim].dirty) {
    StartWrite(victim);
    return Evicted::kWriting;
  }
  Evict(victim);
  return Evicted::kFreed;
}

void ResidencyManager::Evict(EntryId id) {
  Entry& e = entries_[id];
  ClassStats& cs = stats_.per_class[static_cast<int>(e.spec.cls)];
  ++cs.evictions;
  if (e.awaiting_use) ++cs.prefetches_wasted;
  Drop(id);
  if (options_.record_evictions) eviction_log_.push_back(id);
}

void ResidencyManager::Drop(EntryId id) {
  Entry& e = entries_[id];
  e.awaiting_use = false;
  e.announced = false;
  arena_->Free(e.slot);
  policy_->OnErase(id);
  e.state = EntryState::kAbsent;
}

void ResidencyManager::StartWrite(EntryId id) {
  Entry& e = entries_[id];
  e.state = EntryState::kWriting;
  e.writing_gen = e.dirty_gen;
  io::WriteRequest req;
  req.offset = e.read_offset;
  req.len = e.read_len;
  req.src = arena_->At(e.slot);
  req.options.io_class = static_cast<io::IoClass>(e.spec.cls);
  req.user_data = id;
  e.in_flight = reading_.insert(reading_.end(), id);
  ++reads_in_flight_[e.spec.file];
  e.read_id = e.spill->SubmitWrite(req);
}

void ResidencyManager::Discard(EntryId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[id];
    assert(e.spill && "Discard of an entry that is not writable");
    assert(e.pins == 0 && "Discard of a pinned entry");
    if (!e.spill || e.pins > 0) return;
    ++stats_.per_class[static_cast<int>(e.spec.cls)].discards;
    e.lost = Status::Ok();
    e.written = false;
    e.dirty = false;
    e.failed_seq = 0;
    if (e.state == EntryState::kResident) Drop(id);
    if (e.state == EntryState::kReading || e.state == EntryState::kWriting) e.discard_pending = true;
  }
  cv_.notify_all();
}

void ResidencyManager::StartRead(EntryId id, uint64_t slot, Mode mode) {
  Entry& e = entries_[id];
  e.slot = slot;
  e.state = EntryState::kReading;
  ++e.read_seq;
  e.demand_read = mode == Mode::kDemand;
  e.awaiting_use = mode == Mode::kPrefetch;
  policy_->OnInsert(id);
  if (policy_->PinnedForever(id)) forever_bytes_ += e.slot_bytes;
  if (mode == Mode::kPrefetch) ++stats_.per_class[static_cast<int>(e.spec.cls)].prefetches;
  io::ReadRequest req;
  req.offset = e.read_offset;
  req.len = e.read_len;
  req.dst = arena_->At(slot);
  req.options.io_class = static_cast<io::IoClass>(e.spec.cls);
  req.options.priority = mode == Mode::kDemand ? io::IoPriority::kDemand : io::IoPriority::kPrefetch;
  req.user_data = id;
  e.in_flight = reading_.insert(reading_.end(), id);
  ++reads_in_flight_[e.spec.file];
  e.read_id = e.spec.file->Submit(req);
}

void ResidencyManager::Harvest() {
  if (driver_busy_) return;  // the driver may be waiting on a result a Poll would steal
  std::vector<io::RandomAccessFile*> files;
  for (const auto& [f, n] : reads_in_flight_)
    if (n > 0) files.push_back(f);
  for (io::RandomAccessFile* f : files)
    for (io::ReadResult& r : f->Poll()) Apply(f, std::move(r));
}

void ResidencyManager::Apply(io::RandomAccessFile* file, io::ReadResult r) {
  if (r.user_data >= entries_.size()) return;
  const EntryId id = static_cast<EntryId>(r.user_data);
  Entry& e = entries_[id];
  if ((e.state != EntryState::kReading && e.state != EntryState::kWriting) || e.read_id != r.id ||
      e.spec.file != file)
    return;
  reading_.erase(e.in_flight);
  --reads_in_flight_[file];
  ClassStats& cs = stats_.per_class[static_cast<int>(e.spec.cls)];
  if (e.discard_pending) {  // nobody wants these bytes any more
    e.discard_pending = false;
    e.written = false;
    e.dirty = false;
    Drop(id);
    return;
  }
  if (e.state == EntryState::kWriting) {
    e.state = EntryState::kResident;
    if (r.status.ok() && r.bytes == e.read_len) {
      ++cs.writes;
      cs.bytes_written += r.bytes;
      e.written = true;
      if (e.dirty_gen == e.writing_gen) e.dirty = false;
      // Written back to make room: the slot frees now unless someone holds or changed it.
      if (!e.dirty && e.pins == 0 && !e.announced) Evict(id);
      return;
    }
    const Status cause = r.status.ok() ? Status::IoError(file->name() + ": short write: " + std::to_string(r.bytes) +
                                                         " of " + std::to_string(e.read_len) + " bytes")
                                       : r.status;
    ++cs.write_errors;
    e.lost = Status::IoError(Describe(e) + ": writing it to the spill file failed, its contents are lost: " +
                             cause.message());
    e.written = false;
    e.dirty = false;
    if (e.pins == 0) Drop(id);  // else it frees at Discard()
    return;
  }
  if (r.status.ok() && r.bytes == e.read_len) {
    e.state = EntryState::kResident;
    ++cs.reads;
    cs.bytes_read += r.bytes;
    return;
  }
  const Status cause = r.status.ok() ? Status::IoError(file->name() + ": short read: " + std::to_string(r.bytes) +
                                                       " of " + std::to_string(e.read_len) + " bytes")
                                     : r.status;
  e.error = Status(cause.code(), Describe(e) + ": " + cause.message());
  e.failed_seq = e.read_seq;
  ++cs.io_errors;
  if (e.awaiting_use) ++cs.prefetches_wasted;
  e.awaiting_use = false;
  e.announced = false;
  arena_->Free(e.slot);
  policy_->OnErase(id);
  if (policy_->PinnedForever(id)) forever_bytes_ -= e.slot_bytes;
  e.state = EntryState::kAbsent;
}

Status ResidencyManager::DriveIo(std::unique_lock<std::mutex>& lock, EntryId id) {
  if (driver_busy_) {  // another caller waits on the storage; it will wake us
    cv_.wait(lock);
    return Status::Ok();
  }
  Entry& e = entries_[id];
  if (e.state != EntryState::kReading && e.state != EntryState::kWriting) return Status::Ok();
  driver_busy_ = true;
  io::RandomAccessFile* f = e.spec.file;
  const io::ReadId rid = e.read_id;
  std::vector<io::ReadResult> got;
  lock.unlock();
  Status st = f->Wait({&rid, 1}, options_.read_timeout_nanos, &got);
  lock.lock();
  driver_busy_ = false;
  for (io::ReadResult& r : got) Apply(f, std::move(r));
  cv_.notify_all();
  return st;
}

ResidencyStats ResidencyManager::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ResidencyStats s = stats_;
  s.capacity_bytes = arena_->capacity();
  s.allocated_bytes = arena_->allocator().allocated();
  s.peak_allocated_bytes = arena_->allocator().peak_allocated();
  for (EntryId id = 0; id < entries_.size(); ++id) {
    const Entry& e = entries_[id];
    if (e.state == EntryState::kResident || e.state == EntryState::kWriting) s.resident_bytes += e.slot_bytes;
    if (e.state == EntryState::kReading) s.in_flight_bytes += e.slot_bytes;
    if (e.pins > 0) s.pinned_bytes += e.slot_bytes;
    if (e.state == EntryState::kResident && policy_->PinnedForever(id)) s.pinned_forever_bytes += e.slot_bytes;
  }
  return s;
}

EntryState ResidencyManager::state(EntryId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_[id].state;
}

EntryState ResidencyManager::Poll(EntryId id) {
  std::lock_guard<std::mutex> lock(mu_);
  Harvest();
  return entries_[id].state;
}

uint64_t ResidencyManager::read_generation(EntryId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_[id].read_seq;
}

int ResidencyManager::pin_count(EntryId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_[id].pins;
}

std::vector<EntryId> ResidencyManager::TakeEvictionLog() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EntryId> out;
  out.swap(eviction_log_);
  return out;
}

}  // namespace tierlm
