// -ctk / -ctv (llama.cpp's --cache-type-k / --cache-type-v): the KV cache's key and value
// types, its block size, and its memory share and spill directory, for every command that
// runs or plans a model.
#pragma once

#include <cstdint>
#include <string>

#include "cli/args.h"
#include "core/status.h"
#include "kv/block_selector.h"
#include "kv/eviction_policy.h"
#include "kv/paged_kv_store.h"

namespace tierlm::cli {

struct KvTypeFlags {
  std::string k = "f16";
  std::string v = "f16";
  int32_t block = 16;  // --kv-block: positions per KV cache block
  std::string mem;     // --kv-mem: memory for the KV cache (the rest spills to disk)
  std::string spill_dir;  // --kv-spill-dir
  // Sparse retrieval (kv/block_selector.h).
  std::string sparse = "exact";  // --kv-sparse
  int64_t budget = 2048;         // --kv-budget
  int32_t sinks = 1;             // --kv-sink-blocks
  int32_t recent = 2;            // --kv-recent-blocks
  int32_t dense_layers = 0;      // --kv-dense-layers
  std::string select_heads = "each";  // --kv-select-heads
  std::string skipped = "drop";       // --kv-skipped
  // Eviction (kv/eviction_policy.h); --kv-sink-blocks and --kv-recent-blocks apply too.
  std::string evict = "none";  // --kv-evict
  int64_t max_tokens = 0;      // --kv-max-tokens
  int32_t evict_window = 32;   // --kv-evict-window
  float evict_decay = 0.99f;   // --kv-evict-decay
};

void AddKvTypeOptions(ArgParser& ap, KvTypeFlags* flags);
// InvalidArgument naming the flag for an unknown type, a bad size. *kv_mem_bytes (when
// not null) gets --kv-mem (0: not given).
Status ApplyKvTypes(const KvTypeFlags& flags, kv::KvFormat* format, uint64_t* kv_mem_bytes = nullptr);
// The sparse retrieval flags, checked against the block size.
Status ApplyKvSparse(const KvTypeFlags& flags, kv::KvSparseOptions* sparse);
// The eviction flags, checked against the block size and against --kv-sparse.
Status ApplyKvEvict(const KvTypeFlags& flags, kv::KvEvictOptions* evict);

}  // namespace tierlm::cli
