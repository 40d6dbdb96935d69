// WeightStore: the one way model code reaches weight bytes.
//
// Compute asks for a tensor with Acquire() and gets a TensorPin: a view of the bytes that
// stays valid until the pin is dropped. Where the bytes live (one in-memory copy of the
// file, a budgeted DRAM cache over an SSD, later GPU memory) is the store's business;
// the model code never changes when the store does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/mapped_memory.h"
#include "core/progress.h"
#include "core/status.h"
#include "format/ggml_type.h"
#include "format/gguf_file.h"

namespace tierlm {

class WeightStore;

// A pinned view of one tensor's bytes. Move-only; releases the pin when destroyed.
class TensorPin {
 public:
  TensorPin() = default;
  TensorPin(const uint8_t* data, uint64_t size, WeightStore* owner, uint64_t token)
      : data_(data), size_(size), owner_(owner), token_(token) {}
  TensorPin(TensorPin&& o) noexcept { *this = std::move(o); }
  TensorPin& operator=(TensorPin&& o) noexcept;
  TensorPin(const TensorPin&) = delete;
  TensorPin& operator=(const TensorPin&) = delete;
  ~TensorPin() { Reset(); }

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  explicit operator bool() const { return data_ != nullptr; }
  void Reset();

 private:
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  WeightStore* owner_ = nullptr;
  uint64_t token_ = 0;
};

struct WeightStoreStats {
  uint64_t resident_bytes = 0;  // weight bytes held in memory now
  uint64_t bytes_read = 0;      // bytes read from storage since open
  uint64_t acquires = 0;
  uint64_t misses = 0;          // acquires that had to wait for a read
};

class WeightStore {
 public:
  virtual ~WeightStore() = default;

  // Returns the bytes of tensor `t` (t.size_bytes of them), valid while the pin lives.
  // REQUIRES: t comes from the GgufFile this store was opened on.
  // Thread safety: may be called from any thread.
  virtual Result<TensorPin> Acquire(const gguf::TensorInfo& t) = 0;

  // Hint that these tensors will be acquired soon, in this order. Default: ignored.
  virtual void Prefetch(std::span<const gguf::TensorInfo* const> upcoming) {}

  virtual WeightStoreStats Stats() const = 0;

  // Where `t`'s bytes are now, without waiting or reading: resident, being read, or
  // absent (an Acquire would start a read). Default: resident (in-memory stores).
  enum class Residency { kResident, kInFlight, kAbsent };
  virtual Residency Probe(const gguf::TensorInfo& t) { return Residency::kResident; }

  // A low-bit copy of the expert slice `t` ("name#e", model/moe_ffn.h), for computing
  // with when its full copy is not resident (--moe-miss). *type receives the copy's
  // encoding (its rows have t's shape). Default: NotFound (the store has no copies).
  virtual Result<TensorPin> AcquireLowbit(const gguf::TensorInfo& t, GgmlType* type) {
    return Status::NotFound("no low-bit expert copies for '" + t.name + "'");
  }
  virtual bool has_lowbit() const { return false; }
  // True if AcquireLowbit can serve the expert slice `t`.
  virtual bool HasLowbit(const gguf::TensorInfo& t) const { return false; }
  // Hint: the low-bit copies of these expert slices will be acquired soon. Default: ignored.
  virtual void PrefetchLowbit(std::span<const gguf::TensorInfo* const> upcoming) {}

 protected:
  friend class TensorPin;
  // Called once for every pin handed out, with the token given to it. Default: nothing.
  virtual void Release(uint64_t token) {}
};

// Reads the file's whole tensor data section into one anonymous buffer at open: one copy
// of the weights in process memory, none in page-cache-backed mappings. The right store
// when the model fits in memory.
class InMemoryWeightStore : public WeightStore {
 public:
  // progress, when set, gets the bytes read so far and the bytes to read.
  static Result<std::unique_ptr<InMemoryWeightStore>> Open(const gguf::GgufFile& file,
                                                           const ProgressFn& progress = {});
  Result<TensorPin> Acquire(const gguf::TensorInfo& t) override;
  WeightStoreStats Stats() const override;

 private:
  InMemoryWeightStore() = default;
  MappedMemory mem_;              // holds the data section
  uint8_t* base_ = nullptr;       // data section, starting at file offset data_offset_
  uint64_t data_offset_ = 0;
  uint64_t data_bytes_ = 0;
};

}  // namespace tierlm
