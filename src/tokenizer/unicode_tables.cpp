#include "tokenizer/unicode_tables.h"

#include <algorithm>
#include <memory>

namespace tierlm::tokenizer {
namespace {

uint16_t LookupRanges(uint32_t cpt) {
  const internal::CodepointRange* begin = internal::kCodepointRanges;
  const internal::CodepointRange* end = begin + internal::kNumCodepointRanges;
  // The last range whose start is <= cpt.
  const auto* it = std::upper_bound(begin, end, cpt, [](uint32_t c, const internal::CodepointRange& r) {
    return c < r.start;
  });
  return it == begin ? 0 : (it - 1)->flags;
}

// Flags of the Basic Multilingual Plane, expanded once for O(1) lookups.
const uint16_t* BmpTable() {
  static const std::unique_ptr<uint16_t[]> table = [] {
    auto t = std::make_unique<uint16_t[]>(0x10000);
    for (size_t i = 0; i < internal::kNumCodepointRanges; ++i) {
      const uint32_t start = internal::kCodepointRanges[i].start;
      if (start >= 0x10000) break;
      const uint32_t end = i + 1 < internal::kNumCodepointRanges
                               ? std::min<uint32_t>(internal::kCodepointRanges[i + 1].start, 0x10000)
                               : 0x10000;
      std::fill(t.get() + start, t.get() + end, internal::kCodepointRanges[i].flags);
    }
    return t;
  }();
  return table.get();
}

}  // namespace

uint16_t CodepointFlags(uint32_t cpt) {
  if (cpt < 0x10000) return BmpTable()[cpt];
  if (cpt > 0x10FFFF) return 0;
  return LookupRanges(cpt);
}

}  // namespace tierlm::tokenizer
