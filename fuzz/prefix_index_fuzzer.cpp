// libFuzzer target: the disk tier's index parser and segment scan (prefix/disk_tier_format.h)
// must answer any bytes with a parsed index or segment, or a Corruption, never crash, hang
// or allocate without bound; what they accept must hold together.
//
// The first byte picks the parser. Random bytes rarely pass a checksum, so two of the modes
// repair the checksums first, to reach the structural checks behind them:
//   0  the index, as given
//   1  the index, its header and trailer checksums recomputed
//   2  a segment, as given
//   3  a segment whose header and records are built from the input (identity, hash and a
//      payload length from each 5-byte chunk), then damaged: cut at a point the input
//      chooses and one byte flipped
#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "prefix/block_record.h"
#include "prefix/disk_tier_format.h"

using namespace tierlm::prefix;

namespace {

uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void CheckIndex(std::span<const uint8_t> bytes) {
  auto parsed = ParseIndex(bytes);
  if (!parsed.ok()) {
    if (parsed.status().message().empty()) __builtin_trap();
    return;
  }
  const IndexFile& index = *parsed;
  if (IndexFileBytes(index.segments.size(), index.entries.size()) != bytes.size()) __builtin_trap();
  for (const IndexEntry& e : index.entries) {
    bool inside = false;
    for (const IndexSegment& s : index.segments)
      if (s.generation == e.generation) inside = e.offset >= kSegmentHeaderBytes && e.offset + e.bytes <= s.bytes;
    if (!inside) __builtin_trap();  // the parser promised every entry lies in a listed segment
  }
  // What was accepted encodes to the same bytes, and parses back the same.
  const std::vector<uint8_t> again = EncodeIndex(index);
  auto reparsed = ParseIndex(again);
  if (!reparsed.ok() || !(*reparsed == index)) __builtin_trap();
}

void CheckScan(std::span<const uint8_t> bytes) {
  const SegmentScan scan = ScanSegmentBytes(bytes);
  if (!scan.header.ok()) {
    if (!scan.records.empty()) __builtin_trap();
    return;
  }
  uint64_t at = kSegmentHeaderBytes;
  for (const SegmentRecord& r : scan.records) {
    if (r.offset != at || r.bytes < kRecordHeaderBytes || r.bytes > bytes.size() - r.offset) __builtin_trap();
    // Each record's header decodes and names the block the scan reported.
    auto h = DecodeRecordHeader(bytes.subspan(r.offset, kRecordHeaderBytes));
    if (!h.ok() || h->identity != r.identity || h->hash != r.hash) __builtin_trap();
    (void)CheckRecord(bytes.subspan(r.offset, r.bytes), r.identity, r.hash, 0);
    at += r.bytes;
  }
  if (scan.valid_end != at || scan.valid_end > bytes.size()) __builtin_trap();
  if (scan.stopped.empty() != (scan.valid_end == bytes.size())) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] & 3;
  std::vector<uint8_t> bytes(data + 1, data + size);
  switch (mode) {
    case 0:
      CheckIndex(bytes);
      break;
    case 1:
      if (bytes.size() >= kIndexHeaderBytes + kIndexTrailerBytes) {
        std::memcpy(bytes.data(), "TLMKVI01", 8);
        Put64(bytes.data() + 56, XXH3_64bits(bytes.data(), 56));
        Put64(bytes.data() + bytes.size() - 8, XXH3_64bits(bytes.data(), bytes.size() - 8));
      }
      CheckIndex(bytes);
      break;
    case 2:
      CheckScan(bytes);
      break;
    default: {
      // [0, 8) generation, [8, 12) cut, [12, 16) flip position, then 5-byte record chunks.
      if (bytes.size() < 16) return 0;
      std::vector<uint8_t> seg(kSegmentHeaderBytes);
      EncodeSegmentHeader({Get64(bytes.data()), 1}, seg.data());
      for (size_t i = 16; i + 5 <= bytes.size() && seg.size() < (1u << 20); i += 5) {
        std::vector<uint8_t> payload(static_cast<size_t>(bytes[i + 4]) * 37, bytes[i]);
        const auto rec = EncodeRecord(bytes[i + 1], bytes[i + 2] | (uint64_t{bytes[i + 3]} << 8), payload);
        seg.insert(seg.end(), rec.begin(), rec.end());
      }
      uint32_t cut = 0, flip = 0;
      std::memcpy(&cut, bytes.data() + 8, 4);
      std::memcpy(&flip, bytes.data() + 12, 4);
      seg.resize(std::min<size_t>(seg.size(), cut % (seg.size() + 1)));
      if (!seg.empty()) seg[flip % seg.size()] ^= static_cast<uint8_t>(1u << (flip >> 29));
      CheckScan(seg);
    }
  }
  return 0;
}
