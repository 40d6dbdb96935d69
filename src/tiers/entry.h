// Entry: a named, sized run of bytes with a home in a file; the unit a tier holds.
// A dense tensor, one expert's slice of a stacked tensor, (later) a KV block.
#pragma once

#include <cstdint>
#include <string>

#include "io/storage_env.h"
#include "tiers/eviction_policy.h"

namespace tierlm {

// What an entry is; stats are kept per class. Values match io::IoClass.
enum class EntryClass : uint8_t { kWeight = 0, kExpert = 1, kKv = 2 };
inline constexpr int kNumEntryClasses = 3;
const char* EntryClassName(EntryClass c);

struct EntrySpec {
  std::string name;  // in every error message: "tensor 'blk.3.attn_q.weight'"
  EntryClass cls = EntryClass::kWeight;
  io::RandomAccessFile* file = nullptr;  // home; not owned, outlives the manager
  uint64_t offset = 0;                   // of the first byte in the file
  uint64_t size = 0;                     // bytes
  // Read-write entries (KV blocks): `file` must be an io::SpillFile, their home. They are
  // written in memory (ResidencyManager::AcquireForWrite), written back to the file before
  // their slot is reused, and read back from it only after such a write-back.
  bool writable = false;
  // Attributes for policies and messages (-1: none): the layer, and for KV blocks the
  // block's id in the KV cache.
  int32_t layer = -1;
  int32_t block = -1;
};

}  // namespace tierlm
