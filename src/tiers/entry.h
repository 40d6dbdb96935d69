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
  // Read-write entries (KV blocks) need write-back before eviction; not implemented yet:
  // Register() answers kUnsupported for them.
  bool writable = false;
};

}  // namespace tierlm
