// libFuzzer target: the attention trace parser (eval/kv_trace.h) must answer any bytes with
// a trace or a Corruption naming the source, never crash, hang or allocate past the input;
// a trace it accepts keeps its promises (layers and heads in range, shares and scores per
// block) and serializes back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <span>

#include "eval/kv_trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tierlm::eval;
  auto t = KvTrace::Parse(std::span<const uint8_t>(data, size), "fuzz");
  if (!t.ok()) {
    if (t.status().code() != tierlm::StatusCode::kCorruption) __builtin_trap();
    if (t.status().message().find("fuzz: ") != 0) __builtin_trap();
    return 0;
  }
  for (const KvTraceRecord& r : t->records) {
    if (r.layer < 0 || r.layer >= t->n_layer || r.head < 0 || r.head >= t->n_head_kv) __builtin_trap();
    if (r.share.empty() || r.share.size() != r.quest.size()) __builtin_trap();
  }
  const std::vector<uint8_t> again = t->Serialize();
  if (again.size() != size || !std::equal(again.begin(), again.end(), data)) __builtin_trap();
  return 0;
}
