#include "tiers/tiered_weight_store.h"

#include <atomic>
#include <chrono>

#include <algorithm>

#include "tiers/policy_factory.h"

namespace tierlm {

Result<WeightPlacement> TieredWeightStore::Plan(const gguf::GgufFile& file, const TieredWeightStoreOptions& options) {
  if (options.budget_bytes == 0) return Status::InvalidArgument("the memory budget must be positive");
  PlacementOptions po;
  po.budget_bytes = options.budget_bytes;
  po.pinned_share = options.pinned_share;
  return PlanWeightPlacement(file, po);
}

Result<std::unique_ptr<TieredWeightStore>> TieredWeightStore::Open(const gguf::GgufFile& file, io::StorageEnv* env,
                                                                   const TieredWeightStoreOptions& options) {
  TIERLM_ASSIGN_OR_RETURN(WeightPlacement placement, Plan(file, options));
  std::unique_ptr<TieredWeightStore> store(new TieredWeightStore());
  store->options_ = options;
  store->options_.progress = nullptr;  // used by Open only; its reporter need not outlive it
  store->data_offset_ = file.data_offset();
  TIERLM_ASSIGN_OR_RETURN(store->file_, env->OpenForRandomRead(file.name()));
  if (store->file_->size() != file.file_size())
    return Status::Corruption(file.name() + ": file changed since it was parsed (" +
                              std::to_string(file.file_size()) + " bytes then, " +
                              std::to_string(store->file_->size()) + " now)");

  int32_t n_layer = 0;
  for (const WeightUnit& u : placement.units) n_layer = std::max(n_layer, LayerOfTensorName(u.name) + 1);
  // The policy asks the manager what an entry is; it is called with the manager's lock
  // held, after the manager exists.
  auto manager_of = std::make_shared<ResidencyManager*>(nullptr);
  TIERLM_ASSIGN_OR_RETURN(
      std::unique_ptr<EvictionPolicy> expert_policy,
      MakeEvictionPolicy(options.expert_policy, std::max(n_layer, 1), [manager_of](EntryId id) {
        return std::max((*manager_of)->spec(id).layer, 0);  // an attribute set at registration
      }));
  auto policy = std::make_unique<ClassSplitPolicy>(
      [manager_of](EntryId id) { return (*manager_of)->spec(id).cls == EntryClass::kExpert; },
      std::move(expert_policy));
  store->policy_ = policy.get();
  ResidencyOptions ro;
  ro.budget_bytes = options.budget_bytes;
  ro.clock = options.clock;
  ro.read_timeout_nanos = options.read_timeout_nanos;
  ro.record_evictions = options.record_evictions;
  TIERLM_ASSIGN_OR_RETURN(store->manager_, ResidencyManager::Create(ro, std::move(policy)));
  *manager_of = store->manager_.get();

  std::vector<EntryId> pinned;
  std::vector<uint64_t> pinned_bytes;
  uint64_t pinned_total = 0;
  for (const WeightUnit& u : placement.units) {
    EntrySpec spec;
    spec.name = u.name;
    spec.cls = u.expert ? EntryClass::kExpert : EntryClass::kWeight;
    spec.file = store->file_.get();
    spec.offset = u.offset;
    spec.size = u.size;
    spec.layer = LayerOfTensorName(u.name);
    TIERLM_ASSIGN_OR_RETURN(EntryId id, store->manager_->Register(spec));
    store->by_name_[u.name] = id;
    store->streamable_.push_back(!u.pinned && !u.expert);
    if (u.pinned) {
      store->policy_->Pin(id);
      pinned.push_back(id);
      pinned_bytes.push_back(u.size);
      pinned_total += u.size;
    }
  }
  store->placement_ = std::move(placement);

  // Read the pinned set: in file order, so it packs the bottom of the arena and leaves
  // the ring one contiguous run. Reads are started together, then collected.
  uint64_t pinned_read = 0;
  if (options.progress) options.progress(0, pinned_total);
  for (size_t at = 0; at < pinned.size();) {
    const size_t n = std::min<size_t>(64, pinned.size() - at);
    std::span<const EntryId> batch(pinned.data() + at, n);
    (void)store->manager_->Prefetch(batch);
    for (size_t i = 0; i < n; ++i) {
      TIERLM_ASSIGN_OR_RETURN(ResidencyPin pin, store->manager_->Acquire(batch[i]));
      pinned_read += pinned_bytes[at + i];
      if (options.progress) options.progress(pinned_read, pinned_total);
    }
    at += n;
  }
  return store;
}

// The manager goes first: it waits for reads in flight, some of them on the low-bit
// cache's file.
TieredWeightStore::~TieredWeightStore() { manager_.reset(); }

Result<EntryId> TieredWeightStore::EntryOf(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return Status::NotFound(file_->name() + ": no tensor '" + name + "' in the store");
  return it->second;
}

Result<EntryId> TieredWeightStore::Resolve(const gguf::TensorInfo& t) {
  // REQUIRES: mu_ held.
  auto it = by_name_.find(t.name);
  if (it != by_name_.end()) {
    const EntrySpec& s = manager_->spec(it->second);
    if (s.offset != t.file_offset || s.size != t.size_bytes)
      return Status::InvalidArgument(file_->name() + ": tensor '" + t.name + "' asked for " +
                                     std::to_string(t.size_bytes) + " bytes at offset " +
                                     std::to_string(t.file_offset) + ", but the store has " + std::to_string(s.size) +
                                     " bytes at offset " + std::to_string(s.offset));
    return it->second;
  }
  // A view the planner did not know (a slice the model made): stream it on demand.
  EntrySpec spec;
  spec.name = t.name;
  spec.cls = t.name.find('#') != std::string::npos ? EntryClass::kExpert : EntryClass::kWeight;
  spec.file = file_.get();
  spec.offset = t.file_offset;
  spec.size = t.size_bytes;
  spec.layer = LayerOfTensorName(t.name);
  TIERLM_ASSIGN_OR_RETURN(EntryId id, manager_->Register(spec));
  by_name_[t.name] = id;
  streamable_.push_back(false);
  return id;
}

Result<TensorPin> TieredWeightStore::Acquire(const gguf::TensorInfo& t) {
  // Everything in here is time compute waits for: bookkeeping, reads, and queueing the
  // prefetches (which blocks while the I/O queue is full).
  const auto t0 = std::chrono::steady_clock::now();
  struct AddElapsed {
    std::chrono::steady_clock::time_point t0;
    std::atomic<int64_t>* total;
    ~AddElapsed() {
      total->fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
                       std::memory_order_relaxed);
    }
  } add_elapsed{t0, &acquire_nanos_};
  EntryId id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TIERLM_ASSIGN_OR_RETURN(id, Resolve(t));
    schedule_.Record(id);
  }
  TIERLM_ASSIGN_OR_RETURN(ResidencyPin pin, manager_->Acquire(id));
  const uint8_t* data = pin.data();
  const uint64_t size = pin.size();
  pin.Detach();  // released through WeightStore::Release(token)
  TensorPin out(data, size, this, id);
  PrefetchAhead();
  return out;
}

void TieredWeightStore::PrefetchAhead() {
  if (options_.prefetch_depth <= 0) return;
  std::vector<EntryId> ahead;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!schedule_.learned()) return;
    // Look past pinned entries: prefetch_depth counts streamed tensors.
    const size_t n = schedule_.cycle().size();
    for (EntryId id : schedule_.Next(n)) {
      if (!streamable_[id]) continue;
      if (std::find(ahead.begin(), ahead.end(), id) != ahead.end()) break;  // wrapped around
      ahead.push_back(id);
      if (ahead.size() >= static_cast<size_t>(options_.prefetch_depth)) break;
    }
  }
  if (!ahead.empty()) (void)manager_->Prefetch(ahead);
}

namespace {
// Adds the time from construction to destruction to *total.
struct ScopedNanos {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  std::atomic<int64_t>* total;
  explicit ScopedNanos(std::atomic<int64_t>* t) : total(t) {}
  ~ScopedNanos() {
    total->fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
                     std::memory_order_relaxed);
  }
};
}  // namespace

void TieredWeightStore::Prefetch(std::span<const gguf::TensorInfo* const> upcoming) {
  ScopedNanos timed(&acquire_nanos_);  // starting reads can block while the queue is full
  std::vector<EntryId> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const gguf::TensorInfo* t : upcoming) {
      if (!t) continue;
      Result<EntryId> id = Resolve(*t);
      if (id.ok()) ids.push_back(*id);
    }
  }
  if (!ids.empty()) (void)manager_->Prefetch(ids);
}

WeightStore::Residency TieredWeightStore::Probe(const gguf::TensorInfo& t) {
  EntryId id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_name_.find(t.name);
    if (it == by_name_.end()) return Residency::kAbsent;
    id = it->second;
  }
  switch (manager_->Poll(id)) {
    case EntryState::kResident: return Residency::kResident;
    case EntryState::kReading: return Residency::kInFlight;
    case EntryState::kAbsent: break;
  }
  return Residency::kAbsent;
}

Status TieredWeightStore::AttachLowbit(std::unique_ptr<LowbitExpertCache> cache) {
  std::lock_guard<std::mutex> lock(mu_);
  if (lowbit_) return Status::InvalidArgument("low-bit expert copies are attached already");
  for (const LowbitEntry& e : cache->entries()) {
    EntrySpec spec;
    spec.name = e.name + " (low-bit copy)";
    spec.cls = EntryClass::kExpert;
    spec.file = &cache->file();
    spec.offset = e.offset;
    spec.size = e.size;
    spec.layer = LayerOfTensorName(e.name);
    TIERLM_ASSIGN_OR_RETURN(EntryId id, manager_->Register(spec));
    lowbit_by_name_[e.name] = LowbitSlot{id, &e, 0};
  }
  lowbit_ = std::move(cache);
  return Status::Ok();
}

Result<TensorPin> TieredWeightStore::AcquireLowbit(const gguf::TensorInfo& t, GgmlType* type) {
  const auto t0 = std::chrono::steady_clock::now();
  LowbitSlot* slot = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = lowbit_by_name_.find(t.name);
    if (!lowbit_ || it == lowbit_by_name_.end())
      return Status::NotFound("no low-bit copy of '" + t.name + "'" +
                              (lowbit_ ? " in " + lowbit_->path() : std::string(" (no low-bit cache attached)")));
    slot = &it->second;
  }
  if (slot->entry->n_in != t.ne[0] || slot->entry->n_out != t.ne[1])
    return Status::Corruption(lowbit_->path() + ": the low-bit copy of '" + t.name + "' has shape [" +
                              std::to_string(slot->entry->n_in) + ", " + std::to_string(slot->entry->n_out) +
                              "], the model's slice " + t.ShapeString());
  TIERLM_ASSIGN_OR_RETURN(ResidencyPin pin, manager_->Acquire(slot->id));
  // Verify each read once: the generation names the read these bytes came from.
  const uint64_t gen = manager_->read_generation(slot->id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (slot->verified_generation != gen) {
      TIERLM_RETURN_IF_ERROR(lowbit_->VerifyEntry(*slot->entry, pin.data()));
      slot->verified_generation = gen;
    }
  }
  *type = slot->entry->type;
  const uint8_t* data = pin.data();
  const uint64_t size = pin.size();
  pin.Detach();
  lowbit_acquires_.fetch_add(1, std::memory_order_relaxed);
  acquire_nanos_.fetch_add(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
      std::memory_order_relaxed);
  return TensorPin(data, size, this, slot->id);
}

bool TieredWeightStore::HasLowbit(const gguf::TensorInfo& t) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lowbit_by_name_.count(t.name) != 0;
}

void TieredWeightStore::PrefetchLowbit(std::span<const gguf::TensorInfo* const> upcoming) {
  ScopedNanos timed(&acquire_nanos_);
  std::vector<EntryId> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const gguf::TensorInfo* t : upcoming) {
      if (!t) continue;
      auto it = lowbit_by_name_.find(t->name);
      if (it != lowbit_by_name_.end()) ids.push_back(it->second.id);
    }
  }
  if (!ids.empty()) (void)manager_->Prefetch(ids);
}

void TieredWeightStore::Release(uint64_t token) { manager_->Unpin(static_cast<EntryId>(token)); }

WeightStoreStats TieredWeightStore::Stats() const {
  const ResidencyStats rs = manager_->Stats();
  const ClassStats total = rs.Total();
  WeightStoreStats s;
  s.resident_bytes = rs.resident_bytes;
  s.bytes_read = total.bytes_read;
  s.acquires = total.acquires;
  s.misses = total.stalls;
  return s;
}

}  // namespace tierlm
