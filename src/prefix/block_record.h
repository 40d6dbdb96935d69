// BlockRecord: how one KV block travels outside the paged cache (the disk segments, Redis).
//
// A record is a 64-byte header and the block's bytes (every layer's keys then values, as
// PagedKvStore::ExportBlock writes them). All integers little-endian.
//
//   [0, 8)    magic "TLMKVB01"
//   [8, 12)   format version (kRecordVersion)
//   [12, 16)  header bytes (64)
//   [16, 24)  identity: the KV identity (model content, architecture, KV types, block
//             size, RoPE, KV format version: prefix/kv_identity.h)
//   [24, 32)  hash: the block's chained content hash (kv_block_manager.h)
//   [32, 40)  payload bytes
//   [40, 48)  XXH3-64 of the payload
//   [48, 56)  reserved (0)
//   [56, 64)  XXH3-64 of bytes [0, 56)
//
// A record is only ever taken whole: a torn header, a payload of the wrong size or checksum,
// a different identity or hash, is a miss (Corruption / NotFound), never wrong KV.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"

namespace tierlm::prefix {

inline constexpr uint32_t kRecordVersion = 1;
inline constexpr size_t kRecordHeaderBytes = 64;

struct RecordHeader {
  uint64_t identity = 0;
  uint64_t hash = 0;
  uint64_t payload_bytes = 0;
  uint64_t payload_checksum = 0;
};

// Header then payload.
std::vector<uint8_t> EncodeRecord(uint64_t identity, uint64_t hash, std::span<const uint8_t> payload);
// Writes the header of a record of `payload` into out[0, 64).
void EncodeRecordHeader(uint64_t identity, uint64_t hash, std::span<const uint8_t> payload, uint8_t* out);
// Corruption (naming what is wrong) unless `bytes` starts with an intact header.
Result<RecordHeader> DecodeRecordHeader(std::span<const uint8_t> bytes);
// The payload of a whole record, checked: the header intact, of this identity and hash
// (NotFound when they differ: another block's record), and a payload of payload_bytes
// (when nonzero) whose checksum matches (Corruption).
Result<std::span<const uint8_t>> CheckRecord(std::span<const uint8_t> record, uint64_t identity, uint64_t hash,
                                             uint64_t payload_bytes);

}  // namespace tierlm::prefix
