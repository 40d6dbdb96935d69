// libFuzzer target: the routing trace parser (moe/routing_trace.h) must answer any bytes
// with a trace or a Corruption / Unsupported naming the source, never crash, hang or
// allocate past the input; a trace it accepts keeps its promises (experts in range,
// sequences that tile the tokens) and survives the routing-consistency metrics.
#include <cstddef>
#include <cstdint>
#include <string>

#include "moe/routing_consistency.h"
#include "moe/routing_trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tierlm;
  auto t = RoutingTrace::Parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!t.ok()) {
    const StatusCode c = t.status().code();
    if (c != StatusCode::kCorruption && c != StatusCode::kUnsupported) __builtin_trap();
    if (t.status().message().find("fuzz: ") != 0) __builtin_trap();
    return 0;
  }
  int64_t next = 0;
  for (const auto& [b, e] : t->sequences()) {
    if (b != next || e <= b) __builtin_trap();
    next = e;
  }
  if (next != t->n_tokens()) __builtin_trap();
  for (int64_t tok = 0; tok < t->n_tokens(); ++tok)
    for (int32_t l = 0; l < t->n_layer(); ++l)
      for (int32_t k = 0; k < t->n_used(); ++k)
        if (t->expert(tok, l, k) < 0 || t->expert(tok, l, k) >= t->n_expert()) __builtin_trap();
  if (t->n_tokens() * t->n_layer() * t->n_used() <= 4096) {
    for (int64_t m : {1, 3}) {
      const SrpResult r = SegmentRoutingBestPerformance(*t, m);
      if (r.has_windows() && !(r.f1 >= 0 && r.f1 <= 1)) __builtin_trap();
      for (double ratio : {1.0, 2.0}) {
        const double a = LayerSegmentCacheHitRate(*t, m, ratio), b = ModelSegmentCacheHitRate(*t, m, ratio);
        if (!(a >= 0 && a <= 1 && b >= 0 && b <= 1)) __builtin_trap();
      }
    }
  }
  return 0;
}
