// TieredWeightStore: a WeightStore for models larger than memory. Holds a DRAM budget,
// keeps the weights that save the most reads pinned for good, and streams the rest from
// storage through a ring of buffers, reading ahead of the forward pass.
//
//   Plan()  decides the placement (see weight_placement.h) without reading a byte; `tierlm
//           plan` prints it, and it names the smallest workable budget if the given one is
//           too small.
//   Open()  plans, maps the budget (one arena: RSS for weights never exceeds it), reads
//           the pinned set, and serves Acquire() from then on.
//
// Prefetching: the store records the order of Acquire() calls in the first forward pass
// (AccessSchedule) and, after each Acquire, starts reads for the next prefetch_depth
// streamed tensors, so they load while the current one computes. Prefetch() hints from
// the model are honoured too (gate-ahead prefetch of experts). Expert slices ("name#e")
// are never pinned: they live in the expert cache (what the pinned set leaves of the
// budget) under TieredWeightStoreOptions::expert_policy.
//
// Exactness: Acquire() returns the file's bytes for the tensor, whatever the budget.
// Errors: an I/O fault, or the file changing under us, fails that Acquire() with a Status
// naming the tensor, the file and the offset; the store stays usable (the next Acquire of
// that tensor reads it again).
//
// Thread safety: Acquire/Prefetch/Stats may be called from any thread.
// REQUIRES: env and file outlive the store; every TensorPin is dropped before it.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>

#include "core/progress.h"
#include "core/status.h"
#include "format/gguf_file.h"
#include "io/clock.h"
#include "io/storage_env.h"
#include "tiers/access_schedule.h"
#include "tiers/class_split_policy.h"
#include "tiers/lowbit_expert_cache.h"
#include "tiers/residency_manager.h"
#include "tiers/weight_placement.h"
#include "tiers/weight_store.h"

namespace tierlm {

struct TieredWeightStoreOptions {
  // DRAM for weights, bytes (pinned set + streaming ring + reads in flight). REQUIRES: > 0.
  uint64_t budget_bytes = 0;
  // Most of the budget that may be pinned when the model does not fit. Default: 0.9.
  double pinned_share = 0.9;
  // Streamed tensors read ahead of the forward pass. 0: no prefetcher (reads on demand
  // only). Default: 4.
  int prefetch_depth = 4;
  // Times stalls (and, with FaultInjectionEnv on the same clock, injected latency).
  // Default: the system clock.
  io::Clock* clock = nullptr;
  // Longest wait for one read. Default: 60 s.
  int64_t read_timeout_nanos = 60'000'000'000;
  // Record evicted entries (ResidencyManager::TakeEvictionLog). Default: false.
  bool record_evictions = false;
  // Eviction order of the expert cache (policy_factory.h): "lru", "lfu-decay", "score".
  std::string expert_policy = "lfu-decay";
  // Called with the pinned bytes read so far and their total while Open reads the pinned
  // set. Default: none.
  ProgressFn progress;
};

class TieredWeightStore : public WeightStore {
 public:
  // The placement Open() would use. kOutOfRange with the smallest workable budget if the
  // budget is too small; kInvalidArgument if it is zero.
  static Result<WeightPlacement> Plan(const gguf::GgufFile& file, const TieredWeightStoreOptions& options);

  // Opens file.name() through env, plans, and reads the pinned set.
  // Errors: those of Plan(); kCorruption if the file's size differs from the parsed one;
  // I/O errors (naming tensor and offset) reading the pinned set.
  static Result<std::unique_ptr<TieredWeightStore>> Open(const gguf::GgufFile& file, io::StorageEnv* env,
                                                         const TieredWeightStoreOptions& options);
  ~TieredWeightStore() override;

  Result<TensorPin> Acquire(const gguf::TensorInfo& t) override;
  void Prefetch(std::span<const gguf::TensorInfo* const> upcoming) override;
  WeightStoreStats Stats() const override;
  Residency Probe(const gguf::TensorInfo& t) override;

  // Low-bit expert copies (HOBBIT-style fallback, lowbit_expert_cache.h): registers every
  // entry of `cache` with the residency manager (class expert, the same budget and
  // policy as the full experts) so AcquireLowbit can serve them. Each read of a copy is
  // checked against its checksum before use. REQUIRES: cache built for this model.
  Status AttachLowbit(std::unique_ptr<LowbitExpertCache> cache);
  Result<TensorPin> AcquireLowbit(const gguf::TensorInfo& t, GgmlType* type) override;
  bool has_lowbit() const override { return lowbit_ != nullptr; }
  bool HasLowbit(const gguf::TensorInfo& t) const override;
  void PrefetchLowbit(std::span<const gguf::TensorInfo* const> upcoming) override;
  // Low-bit copies handed out since open.
  uint64_t lowbit_acquires() const { return lowbit_acquires_.load(std::memory_order_relaxed); }

  const WeightPlacement& placement() const { return placement_; }
  ResidencyStats residency_stats() const { return manager_->Stats(); }
  // Wall-clock time callers spent inside Acquire(), AcquireLowbit(), Prefetch() and
  // PrefetchLowbit() since open (reads waited for, bookkeeping, queueing reads, which
  // blocks while the I/O queue is full): the compute time lost to the store.
  int64_t acquire_nanos() const { return acquire_nanos_.load(std::memory_order_relaxed); }
  io::FileStats file_stats() const { return file_->stats(); }
  ResidencyManager& manager() { return *manager_; }
  // Entry of a unit name ("blk.0.attn_q.weight", "blk.0.ffn_up_exps.weight#3").
  Result<EntryId> EntryOf(const std::string& name) const;

 protected:
  void Release(uint64_t token) override;

 private:
  TieredWeightStore() = default;
  Result<EntryId> Resolve(const gguf::TensorInfo& t);
  void PrefetchAhead();

  TieredWeightStoreOptions options_;
  WeightPlacement placement_;
  std::unique_ptr<io::RandomAccessFile> file_;
  std::unique_ptr<ResidencyManager> manager_;
  ClassSplitPolicy* policy_ = nullptr;  // owned by manager_

  uint64_t data_offset_ = 0;

  mutable std::mutex mu_;  // guards the maps and the schedule
  std::unordered_map<std::string, EntryId> by_name_;
  std::vector<bool> streamable_;  // per entry: prefetcher may read it ahead
  AccessSchedule schedule_;
  std::atomic<int64_t> acquire_nanos_{0};
  std::unique_ptr<LowbitExpertCache> lowbit_;
  struct LowbitSlot {
    EntryId id;
    const LowbitEntry* entry;
    uint64_t verified_generation = 0;  // the read whose bytes passed their checksum
  };
  std::unordered_map<std::string, LowbitSlot> lowbit_by_name_;  // by the full slice's name
  std::atomic<uint64_t> lowbit_acquires_{0};
};

}  // namespace tierlm
