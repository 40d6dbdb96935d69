#include "prefix/block_record.h"

#include "core/little_endian.h"

#include <xxhash.h>

#include <cstring>
#include <string>

namespace tierlm::prefix {
namespace {

constexpr char kMagic[8] = {'T', 'L', 'M', 'K', 'V', 'B', '0', '1'};


std::string Hex(uint64_t v) {
  static const char* d = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = d[v & 15];
  return s;
}

}  // namespace

void EncodeRecordHeader(uint64_t identity, uint64_t hash, std::span<const uint8_t> payload, uint8_t* out) {
  std::memset(out, 0, kRecordHeaderBytes);
  std::memcpy(out, kMagic, 8);
  PutLe32(out + 8, kRecordVersion);
  PutLe32(out + 12, static_cast<uint32_t>(kRecordHeaderBytes));
  PutLe64(out + 16, identity);
  PutLe64(out + 24, hash);
  PutLe64(out + 32, payload.size());
  PutLe64(out + 40, XXH3_64bits(payload.data(), payload.size()));
  PutLe64(out + 56, XXH3_64bits(out, 56));
}

std::vector<uint8_t> EncodeRecord(uint64_t identity, uint64_t hash, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out(kRecordHeaderBytes + payload.size());
  EncodeRecordHeader(identity, hash, payload, out.data());
  if (!payload.empty()) std::memcpy(out.data() + kRecordHeaderBytes, payload.data(), payload.size());
  return out;
}

Result<RecordHeader> DecodeRecordHeader(std::span<const uint8_t> bytes) {
  if (bytes.size() < kRecordHeaderBytes)
    return Status::Corruption("prefix record: " + std::to_string(bytes.size()) + " bytes, shorter than its header");
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kMagic, 8) != 0) return Status::Corruption("prefix record: bad magic");
  if (GetLe64(p + 56) != XXH3_64bits(p, 56)) return Status::Corruption("prefix record: header checksum mismatch");
  if (GetLe32(p + 8) != kRecordVersion)
    return Status::Corruption("prefix record: format version " + std::to_string(GetLe32(p + 8)) + ", expected " +
                              std::to_string(kRecordVersion));
  if (GetLe32(p + 12) != kRecordHeaderBytes) return Status::Corruption("prefix record: bad header size");
  RecordHeader h;
  h.identity = GetLe64(p + 16);
  h.hash = GetLe64(p + 24);
  h.payload_bytes = GetLe64(p + 32);
  h.payload_checksum = GetLe64(p + 40);
  return h;
}

Result<std::span<const uint8_t>> CheckRecord(std::span<const uint8_t> record, uint64_t identity, uint64_t hash,
                                             uint64_t payload_bytes) {
  TIERLM_ASSIGN_OR_RETURN(const RecordHeader h, DecodeRecordHeader(record));
  if (h.identity != identity || h.hash != hash)
    return Status::NotFound("prefix record: holds block " + Hex(h.hash) + " of " + Hex(h.identity) +
                            ", not block " + Hex(hash) + " of " + Hex(identity));
  if (payload_bytes != 0 && h.payload_bytes != payload_bytes)
    return Status::Corruption("prefix record of block " + Hex(hash) + ": " + std::to_string(h.payload_bytes) +
                              " payload bytes, expected " + std::to_string(payload_bytes));
  if (record.size() - kRecordHeaderBytes < h.payload_bytes)
    return Status::Corruption("prefix record of block " + Hex(hash) + ": truncated (" +
                              std::to_string(record.size() - kRecordHeaderBytes) + " of " +
                              std::to_string(h.payload_bytes) + " payload bytes)");
  std::span<const uint8_t> payload = record.subspan(kRecordHeaderBytes, h.payload_bytes);
  if (XXH3_64bits(payload.data(), payload.size()) != h.payload_checksum)
    return Status::Corruption("prefix record of block " + Hex(hash) + ": payload checksum mismatch");
  return payload;
}

}  // namespace tierlm::prefix
