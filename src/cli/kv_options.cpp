#include "cli/kv_options.h"

namespace tierlm::cli {

void AddKvTypeOptions(ArgParser& ap, KvTypeFlags* flags) {
  ap.Add({"-ctk", "--cache-type-k"}, &flags->k, "KV cache key type: f32, f16, bf16, q8_0, q4_0 (default f16)");
  ap.Add({"-ctv", "--cache-type-v"}, &flags->v, "KV cache value type: f32, f16, bf16, q8_0, q4_0 (default f16)");
}

Status ApplyKvTypes(const KvTypeFlags& flags, kv::KvFormat* format) {
  auto k = kv::ParseKvType(flags.k);
  if (!k.ok()) return Status::InvalidArgument("-ctk: " + k.status().message());
  auto v = kv::ParseKvType(flags.v);
  if (!v.ok()) return Status::InvalidArgument("-ctv: " + v.status().message());
  format->k_type = *k;
  format->v_type = *v;
  return Status::Ok();
}

}  // namespace tierlm::cli
