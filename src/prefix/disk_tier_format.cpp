#include "prefix/disk_tier_format.h"

#include "core/little_endian.h"

#include <xxhash.h>

#include <cstring>
#include <string>

#include "prefix/block_record.h"

namespace tierlm::prefix {
namespace {

constexpr char kSegmentMagic[8] = {'T', 'L', 'M', 'K', 'V', 'S', '0', '1'};
constexpr char kIndexMagic[8] = {'T', 'L', 'M', 'K', 'V', 'I', '0', '1'};


}  // namespace

void EncodeSegmentHeader(const SegmentHeader& h, uint8_t* out) {
  std::memset(out, 0, kSegmentHeaderBytes);
  std::memcpy(out, kSegmentMagic, 8);
  PutLe32(out + 8, kSegmentVersion);
  PutLe32(out + 12, static_cast<uint32_t>(kSegmentHeaderBytes));
  PutLe64(out + 16, h.generation);
  PutLe64(out + 24, h.nonce);
  PutLe64(out + 56, XXH3_64bits(out, 56));
}

Result<SegmentHeader> DecodeSegmentHeader(std::span<const uint8_t> bytes) {
  if (bytes.size() < kSegmentHeaderBytes)
    return Status::Corruption("segment of " + std::to_string(bytes.size()) + " bytes, shorter than its header");
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kSegmentMagic, 8) != 0) return Status::Corruption("segment header: bad magic");
  if (GetLe64(p + 56) != XXH3_64bits(p, 56)) return Status::Corruption("segment header: checksum mismatch");
  if (GetLe32(p + 8) != kSegmentVersion)
    return Status::Corruption("segment header: format version " + std::to_string(GetLe32(p + 8)) + ", expected " +
                              std::to_string(kSegmentVersion));
  if (GetLe32(p + 12) != kSegmentHeaderBytes) return Status::Corruption("segment header: bad header size");
  SegmentHeader h;
  h.generation = GetLe64(p + 16);
  h.nonce = GetLe64(p + 24);
  return h;
}

SegmentScan ScanSegment(uint64_t file_bytes, const SegmentReadFn& read) {
  SegmentScan scan;
  uint8_t buf[kRecordHeaderBytes];
  static_assert(kRecordHeaderBytes == kSegmentHeaderBytes);
  if (file_bytes < kSegmentHeaderBytes || !read(0, kSegmentHeaderBytes, buf)) {
    scan.header = Status::Corruption("segment of " + std::to_string(file_bytes) + " bytes, shorter than its header");
    return scan;
  }
  auto header = DecodeSegmentHeader(std::span<const uint8_t>(buf, kSegmentHeaderBytes));
  if (!header.ok()) {
    scan.header = header.status();
    return scan;
  }
  scan.segment = *header;
  uint64_t at = kSegmentHeaderBytes;
  while (at < file_bytes) {
    const uint64_t left = file_bytes - at;
    if (left < kRecordHeaderBytes) {
      scan.stopped = "torn record header at offset " + std::to_string(at);
      break;
    }
    if (!read(at, kRecordHeaderBytes, buf)) {
      scan.stopped = "cannot read the record header at offset " + std::to_string(at);
      break;
    }
    auto rh = DecodeRecordHeader(std::span<const uint8_t>(buf, kRecordHeaderBytes));
    if (!rh.ok()) {
      scan.stopped = "offset " + std::to_string(at) + ": " + rh.status().message();
      break;
    }
    if (rh->payload_bytes > left - kRecordHeaderBytes) {
      scan.stopped = "record at offset " + std::to_string(at) + " runs past the end of the segment (" +
                     std::to_string(rh->payload_bytes) + " payload bytes, " +
                     std::to_string(left - kRecordHeaderBytes) + " left)";
      break;
    }
    const uint64_t bytes = kRecordHeaderBytes + rh->payload_bytes;
    scan.records.push_back({rh->identity, rh->hash, at, bytes});
    at += bytes;
  }
  scan.valid_end = scan.records.empty() ? kSegmentHeaderBytes : scan.records.back().offset + scan.records.back().bytes;
  return scan;
}

SegmentScan ScanSegmentBytes(std::span<const uint8_t> bytes) {
  return ScanSegment(bytes.size(), [&](uint64_t offset, size_t n, uint8_t* dst) {
    if (offset > bytes.size() || n > bytes.size() - offset) return false;
    std::memcpy(dst, bytes.data() + offset, n);
    return true;
  });
}

uint64_t IndexFileBytes(uint64_t segments, uint64_t entries) {
  return kIndexHeaderBytes + segments * kIndexSegmentBytes + entries * kIndexEntryBytes + kIndexTrailerBytes;
}

std::vector<uint8_t> EncodeIndex(const IndexFile& index) {
  std::vector<uint8_t> out(IndexFileBytes(index.segments.size(), index.entries.size()), 0);
  uint8_t* p = out.data();
  std::memcpy(p, kIndexMagic, 8);
  PutLe32(p + 8, kIndexVersion);
  PutLe32(p + 12, static_cast<uint32_t>(kIndexHeaderBytes));
  PutLe64(p + 16, index.segments.size());
  PutLe64(p + 24, index.entries.size());
  PutLe64(p + 32, index.next_generation);
  PutLe64(p + 56, XXH3_64bits(p, 56));
  p += kIndexHeaderBytes;
  for (const IndexSegment& s : index.segments) {
    PutLe64(p, s.generation);
    PutLe64(p + 8, s.nonce);
    PutLe64(p + 16, s.bytes);
    p += kIndexSegmentBytes;
  }
  for (const IndexEntry& e : index.entries) {
    PutLe64(p, e.identity);
    PutLe64(p + 8, e.hash);
    PutLe64(p + 16, e.generation);
    PutLe64(p + 24, e.offset);
    PutLe64(p + 32, e.bytes);
    p += kIndexEntryBytes;
  }
  PutLe64(p, XXH3_64bits(out.data(), out.size() - kIndexTrailerBytes));
  return out;
}

Result<IndexFile> ParseIndex(std::span<const uint8_t> bytes) {
  if (bytes.size() < kIndexHeaderBytes + kIndexTrailerBytes)
    return Status::Corruption("index of " + std::to_string(bytes.size()) + " bytes, shorter than its header");
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kIndexMagic, 8) != 0) return Status::Corruption("index: bad magic");
  if (GetLe64(p + 56) != XXH3_64bits(p, 56)) return Status::Corruption("index: header checksum mismatch");
  if (GetLe32(p + 8) != kIndexVersion)
    return Status::Corruption("index: format version " + std::to_string(GetLe32(p + 8)) + ", expected " +
                              std::to_string(kIndexVersion));
  if (GetLe32(p + 12) != kIndexHeaderBytes) return Status::Corruption("index: bad header size");
  const uint64_t n_segments = GetLe64(p + 16), n_entries = GetLe64(p + 24);
  // Both counts bounded by the bytes there are before any arithmetic or allocation.
  const uint64_t body = bytes.size() - kIndexHeaderBytes - kIndexTrailerBytes;
  if (n_segments > body / kIndexSegmentBytes || n_entries > body / kIndexEntryBytes ||
      IndexFileBytes(n_segments, n_entries) != bytes.size())
    return Status::Corruption("index: " + std::to_string(n_segments) + " segments and " + std::to_string(n_entries) +
                              " entries do not fill its " + std::to_string(bytes.size()) + " bytes");
  if (GetLe64(p + bytes.size() - kIndexTrailerBytes) != XXH3_64bits(p, bytes.size() - kIndexTrailerBytes))
    return Status::Corruption("index: checksum mismatch");
  IndexFile index;
  index.next_generation = GetLe64(p + 32);
  index.segments.resize(n_segments);
  index.entries.resize(n_entries);
  const uint8_t* q = p + kIndexHeaderBytes;
  for (uint64_t i = 0; i < n_segments; ++i, q += kIndexSegmentBytes) {
    IndexSegment& s = index.segments[i];
    s.generation = GetLe64(q);
    s.nonce = GetLe64(q + 8);
    s.bytes = GetLe64(q + 16);
    if (i > 0 && s.generation <= index.segments[i - 1].generation)
      return Status::Corruption("index: segment generations not increasing at segment " + std::to_string(i));
    if (s.bytes < kSegmentHeaderBytes)
      return Status::Corruption("index: segment " + std::to_string(s.generation) + " shorter than its header");
  }
  for (uint64_t i = 0; i < n_entries; ++i, q += kIndexEntryBytes) {
    IndexEntry& e = index.entries[i];
    e.identity = GetLe64(q);
    e.hash = GetLe64(q + 8);
    e.generation = GetLe64(q + 16);
    e.offset = GetLe64(q + 24);
    e.bytes = GetLe64(q + 32);
    // The segments are sorted: binary search for the entry's.
    size_t lo = 0, hi = index.segments.size();
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if (index.segments[mid].generation < e.generation) lo = mid + 1;
      else hi = mid;
    }
    if (lo == index.segments.size() || index.segments[lo].generation != e.generation)
      return Status::Corruption("index: entry " + std::to_string(i) + " names segment " +
                                std::to_string(e.generation) + ", which the index does not list");
    const uint64_t seg_bytes = index.segments[lo].bytes;
    if (e.bytes < kRecordHeaderBytes || e.offset < kSegmentHeaderBytes || e.offset > seg_bytes ||
        e.bytes > seg_bytes - e.offset)
      return Status::Corruption("index: entry " + std::to_string(i) + " (" + std::to_string(e.bytes) +
                                " bytes at offset " + std::to_string(e.offset) + ") lies outside segment " +
                                std::to_string(e.generation) + " of " + std::to_string(seg_bytes) + " bytes");
  }
  return index;
}

}  // namespace tierlm::prefix
