// -ctk / -ctv (llama.cpp's --cache-type-k / --cache-type-v): the KV cache's key and value
// types, for every command that runs or plans a model.
#pragma once

#include <cstdint>
#include <string>

#include "cli/args.h"
#include "core/status.h"
#include "kv/paged_kv_store.h"

namespace tierlm::cli {

struct KvTypeFlags {
  std::string k = "f16";
  std::string v = "f16";
  int32_t block = 16;  // --kv-block: positions per KV cache block
};

void AddKvTypeOptions(ArgParser& ap, KvTypeFlags* flags);
// InvalidArgument naming the flag for an unknown type.
Status ApplyKvTypes(const KvTypeFlags& flags, kv::KvFormat* format);

}  // namespace tierlm::cli
