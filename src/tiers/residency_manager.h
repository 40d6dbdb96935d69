// ResidencyManager: owns one budgeted tier (DRAM now) and decides which entries' bytes
// live in it. Entries are registered once, then acquired (pinned view, read on demand)
// and prefetched (reads started early). The budget is a hard bound: every resident entry
// and every read in flight occupies a slot of one arena mapped at Create().
//
// Per entry: a state (absent, reading, resident), a pin count (live Pins; a pinned entry
// cannot be evicted), and whether it was prefetched and not yet used (prefetches do not
// evict such entries; a demand acquire does only as a last resort). Entry records live as
// long as the manager (the "ref count" of an entry is the manager itself), apart from the
// bytes, which come and go.
//
// Reads are two-phase: a slot is reserved and the read submitted (the entry is "reading"
// and cannot be evicted), then the completion makes it resident or, on failure, frees
// the slot and records the error.
//
// Writable entries (KV blocks, homed in a spill file) add a write-back path. An entry
// acquired for writing becomes dirty; evicting a dirty entry first writes it back (the
// entry is "writing": still resident, readable, not evictable; its slot frees when the
// write completes). An entry is read from its file only if a write-back of it completed
// since it was last discarded; one never written starts as a zeroed slot, with no read. A
// failed write-back loses the entry's bytes: every later Acquire fails with that error,
// naming the entry, until Discard(). Discard() drops an entry whose contents are no longer
// needed (a freed KV block) without writing it back. Completions are collected by whichever call comes
// next (no background thread): Acquire/Prefetch poll the files without blocking, and an
// Acquire that needs a read in flight waits for that read alone.
//
// Thread safety: every method may be called from any thread. One caller at a time waits
// on the storage; the others wait on it.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <deque>
#include <list>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "io/clock.h"
#include "tiers/admit.h"
#include "tiers/arena.h"
#include "tiers/entry.h"
#include "tiers/eviction_policy.h"
#include "tiers/residency_stats.h"

namespace tierlm {

struct ResidencyOptions {
  // The tier's size: every resident byte and every read buffer. Rounded down to 4 KiB.
  uint64_t budget_bytes = 0;
  // Times stalls; FaultInjectionEnv latency must use the same clock. Default: system.
  io::Clock* clock = nullptr;
  // Longest wait for one read before Acquire gives up with kIoError (the read stays in
  // flight and its slot reserved). Negative: no limit. Default: 60 s.
  int64_t read_timeout_nanos = 60'000'000'000;
  // Keep the list of evicted entries for TakeEvictionLog() (tests). Default: false.
  bool record_evictions = false;
};

class ResidencyManager;

// A pinned, resident entry: its bytes stay put until the Pin is dropped. Move-only.
class ResidencyPin {
 public:
  ResidencyPin() = default;
  ResidencyPin(ResidencyPin&& o) noexcept { *this = std::move(o); }
  ResidencyPin& operator=(ResidencyPin&& o) noexcept;
  ResidencyPin(const ResidencyPin&) = delete;
  ResidencyPin& operator=(const ResidencyPin&) = delete;
  ~ResidencyPin() { Reset(); }

  const uint8_t* data() const { return data_; }
  // The bytes of a pin taken by AcquireForWrite (nullptr for other pins).
  uint8_t* mutable_data() const { return writable_ ? const_cast<uint8_t*>(data_) : nullptr; }
  uint64_t size() const { return size_; }
  EntryId id() const { return id_; }
  explicit operator bool() const { return manager_ != nullptr; }
  void Reset();
  // Gives up ownership of the pin without releasing it; the caller must call
  // ResidencyManager::Unpin(id()) later.
  EntryId Detach();

 private:
  friend class ResidencyManager;
  ResidencyPin(ResidencyManager* m, EntryId id, const uint8_t* data, uint64_t size, bool writable = false)
      : manager_(m), id_(id), data_(data), size_(size), writable_(writable) {}
  ResidencyManager* manager_ = nullptr;
  EntryId id_ = 0;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool writable_ = false;
};

// kWriting: resident, its write-back in flight.
enum class EntryState : uint8_t { kAbsent, kReading, kResident, kWriting };

class ResidencyManager {
 public:
  // Maps the arena. REQUIRES: policy non-null. Errors from Arena::Create.
  static Result<std::unique_ptr<ResidencyManager>> Create(const ResidencyOptions& options,
                                                          std::unique_ptr<EvictionPolicy> policy);
  // Waits for reads in flight. REQUIRES: no live Pins.
  ~ResidencyManager();

  // Adds an entry. kInvalidArgument if it lies outside its file or is empty, or if it is
  // writable and its file is not a spill file or its range is not 4 KiB aligned.
  Result<EntryId> Register(const EntrySpec& spec);

  // Returns the entry's bytes, pinned. Waits if its read is in flight; otherwise reads it,
  // evicting unpinned entries in policy order to make room. Errors:
  //   kIoError / kCorruption naming the entry, its file and offset (the entry is left
  //     absent, so a later Acquire retries; the manager stays usable);
  //   kResourceExhausted if the entry can never fit, or cannot fit now because live Pins
  //     hold the room (nothing in flight would free it).
  Result<ResidencyPin> Acquire(EntryId id);

  // Acquire for writing: the pin's mutable_data() may be changed while it is held, and the
  // entry is dirty from then on. REQUIRES: a writable entry. Waits for a write-back of the
  // entry in flight. Errors as Acquire, and the entry's loss (see above).
  Result<ResidencyPin> AcquireForWrite(EntryId id);

  // The entry's contents are no longer needed: its slot frees now (or when its I/O in
  // flight completes) without a write-back, and it reads as never written again; a loss
  // is forgotten. REQUIRES: a writable entry with no live pins.
  void Discard(EntryId id);

  // Starts reads of absent entries, in order, without blocking on I/O. Never evicts a
  // pinned, in-flight, pinned-forever or prefetched-but-unused entry, nor a resident one
  // named by an earlier Prefetch and not acquired since (announced: about to be used). One answer per id;
  // after the first kLater the rest are kLater too (order is kept; no skipping ahead).
  std::vector<Admit> Prefetch(std::span<const EntryId> ids);

  // Releases one pin taken by Acquire. Called by ResidencyPin.
  void Unpin(EntryId id);

  ResidencyStats Stats() const;
  EntryState state(EntryId id) const;
  // state() after collecting finished reads, without blocking.
  EntryState Poll(EntryId id);
  // Counts the reads started for `id`: bytes seen under one pin belong to the read with
  // this number (callers verify each read's bytes once).
  uint64_t read_generation(EntryId id) const;
  int pin_count(EntryId id) const;
  const EntrySpec& spec(EntryId id) const { return entries_[id].spec; }
  size_t num_entries() const { return entries_.size(); }
  // Bytes the entry occupies in the arena (its read range rounded to 4 KiB).
  uint64_t SlotBytes(EntryId id) const { return entries_[id].slot_bytes; }
  uint64_t capacity() const { return arena_->capacity(); }
  // Evicted entries in eviction order since the last call (needs record_evictions).
  std::vector<EntryId> TakeEvictionLog();
  EvictionPolicy* policy() const { return policy_.get(); }

 private:
  struct Entry {
    EntrySpec spec;
    uint64_t read_offset = 0;  // covering range, aligned where the file allows
    uint64_t read_len = 0;
    uint64_t slot_bytes = 0;
    EntryState state = EntryState::kAbsent;
    uint64_t slot = 0;  // arena offset while reading or resident
    int pins = 0;
    bool awaiting_use = false;  // prefetched, not acquired since
    bool announced = false;     // resident when named by Prefetch, not acquired since
    bool demand_read = false;   // the read in flight was started by Acquire
    io::ReadId read_id = 0;     // of the read or write-back in flight
    std::list<EntryId>::iterator in_flight;  // its place in reading_ while in flight
    uint64_t read_seq = 0;      // bumped per read started
    uint64_t failed_seq = 0;    // read_seq of the last failed read
    Status error;               // why that read failed
    // Writable entries.
    io::SpillFile* spill = nullptr;
    bool written = false;       // the file holds the entry's bytes (a write-back completed)
    bool dirty = false;         // the resident bytes differ from the file's
    bool discard_pending = false;  // discarded while its I/O was in flight
    uint64_t dirty_gen = 0;     // bumped by every AcquireForWrite
    uint64_t writing_gen = 0;   // dirty_gen when the write-back in flight started
    Status lost;                // a write-back failed: the bytes are gone
  };

  ResidencyManager(const ResidencyOptions& options, std::unique_ptr<Arena> arena,
                   std::unique_ptr<EvictionPolicy> policy);

  enum class Mode { kDemand, kPrefetch };
  // Finds a slot for `e`, evicting as `mode` allows. REQUIRES: mu_ held.
  Admit MakeRoom(EntryId id, Mode mode, uint64_t* slot);
  // Evicts the policy's first evictable victim: frees its slot (kFreed), or, for a dirty
  // one, starts its write-back (kWriting: the slot frees when it completes).
  enum class Evicted { kNone, kFreed, kWriting };
  Evicted EvictOne(Mode mode, bool allow_awaiting, EntryId except);
  void StartRead(EntryId id, uint64_t slot, Mode mode);
  void StartWrite(EntryId id);
  // Frees the slot of a resident or writing entry that is leaving (no write-back).
  void Drop(EntryId id);
  Result<ResidencyPin> AcquireImpl(EntryId id, bool for_write);
  void Evict(EntryId id);
  // Non-blocking: collects finished reads. REQUIRES: mu_ held; no-op while a driver waits.
  void Harvest();
  void Apply(io::RandomAccessFile* file, io::ReadResult r);
  // Waits until `id` is no longer being read (or any read ends, if id is absent),
  // releasing mu_ while blocked. REQUIRES: lock holds mu_.
  Status DriveIo(std::unique_lock<std::mutex>& lock, EntryId id);
  std::string Describe(const Entry& e) const;

  const ResidencyOptions options_;
  io::Clock* const clock_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<EvictionPolicy> policy_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool driver_busy_ = false;
  std::deque<Entry> entries_;  // a deque: references stay valid as entries are added
  std::unordered_map<io::RandomAccessFile*, int> reads_in_flight_;  // per file
  std::list<EntryId> reading_;  // entries with a read or write-back in flight, oldest first
  ResidencyStats stats_;
  std::vector<EntryId> eviction_log_;
  uint64_t forever_bytes_ = 0;  // slots of pinned-forever entries (reading or resident)
};

}  // namespace tierlm
