// The disk tier's on-disk format (prefix/disk_block_tier.h): segment files and the index.
// Pure functions over bytes, so that the parsers can be fuzzed (fuzz/prefix_index_fuzzer.cpp)
// and tested without files. All integers little-endian.
//
// A segment file ("segment-<generation>") is a 64-byte header and records appended back to
// back, each a BlockRecord (prefix/block_record.h: 64-byte header, then the payload):
//
//   [0, 8)    magic "TLMKVS01"
//   [8, 12)   format version (kSegmentVersion)
//   [12, 16)  header bytes (64)
//   [16, 24)  generation: a number that only grows in one directory, also in the file name
//   [24, 32)  nonce: random at creation, so that an index entry can never describe another
//             file that happens to carry the same generation
//   [32, 56)  reserved (0)
//   [56, 64)  XXH3-64 of bytes [0, 56)
//
// A segment is read back by a scan of its record headers (the payloads are skipped; Load
// checks them): the scan stops at the first header that does not decode or whose payload
// runs past the end of the file (a torn write, a truncation), and everything before it is
// kept.
//
// The index file ("index") says which blocks the sealed segments hold, so that Open need
// not scan them:
//
//   [0, 64)   header: magic "TLMKVI01", u32 version (kIndexVersion), u32 header bytes (64),
//             u64 segment count S, u64 entry count E, u64 next generation, 16 reserved
//             bytes (0), u64 XXH3-64 of bytes [0, 56)
//   S x 32    segments: u64 generation, u64 nonce, u64 bytes (the file's size when the index
//             was written), u64 reserved (0); generations strictly increasing
//   E x 40    entries: u64 identity, u64 hash, u64 generation, u64 offset, u64 record bytes
//   8         XXH3-64 of every byte before it
//
// An index is taken only whole (size, both checksums, every entry inside a listed segment's
// bytes) and only for a segment whose generation, nonce and size all still match the file:
// anything else is scanned.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tierlm::prefix {

inline constexpr uint32_t kSegmentVersion = 1;
inline constexpr uint32_t kIndexVersion = 1;
inline constexpr size_t kSegmentHeaderBytes = 64;
inline constexpr size_t kIndexHeaderBytes = 64;
inline constexpr size_t kIndexSegmentBytes = 32;
inline constexpr size_t kIndexEntryBytes = 40;
inline constexpr size_t kIndexTrailerBytes = 8;

struct SegmentHeader {
  uint64_t generation = 0;
  uint64_t nonce = 0;
  bool operator==(const SegmentHeader&) const = default;
};

void EncodeSegmentHeader(const SegmentHeader& h, uint8_t* out);  // writes out[0, 64)
// Corruption (naming what is wrong) unless `bytes` starts with an intact segment header.
Result<SegmentHeader> DecodeSegmentHeader(std::span<const uint8_t> bytes);

// One record a segment holds: [offset, offset + bytes) of the file.
struct SegmentRecord {
  uint64_t identity = 0;
  uint64_t hash = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;  // header and payload
};

struct SegmentScan {
  Status header;                 // OK, or why the segment header is unusable (nothing else is set)
  SegmentHeader segment;
  std::vector<SegmentRecord> records;  // in file order
  uint64_t valid_end = 0;        // the end of the last whole record (or of the header)
  std::string stopped;           // why the scan ended before the end of the file ("" when it did not)
};

// Reads n bytes at offset into dst; false when it cannot (an error or the end of the file).
using SegmentReadFn = std::function<bool(uint64_t offset, size_t n, uint8_t* dst)>;
// Scans a segment of file_bytes bytes, reading only its headers through `read`.
SegmentScan ScanSegment(uint64_t file_bytes, const SegmentReadFn& read);
// The same over a segment held in memory.
SegmentScan ScanSegmentBytes(std::span<const uint8_t> bytes);

struct IndexSegment {
  uint64_t generation = 0;
  uint64_t nonce = 0;
  uint64_t bytes = 0;
  bool operator==(const IndexSegment&) const = default;
};

struct IndexEntry {
  uint64_t identity = 0;
  uint64_t hash = 0;
  uint64_t generation = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  bool operator==(const IndexEntry&) const = default;
};

struct IndexFile {
  uint64_t next_generation = 0;
  std::vector<IndexSegment> segments;  // generations strictly increasing
  std::vector<IndexEntry> entries;
  bool operator==(const IndexFile&) const = default;
};

// The file's bytes for an index of s segments and e entries.
uint64_t IndexFileBytes(uint64_t segments, uint64_t entries);
std::vector<uint8_t> EncodeIndex(const IndexFile& index);
// The index in `bytes`, or Corruption naming the first thing wrong with it.
Result<IndexFile> ParseIndex(std::span<const uint8_t> bytes);

}  // namespace tierlm::prefix
