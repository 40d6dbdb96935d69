// An attention trace: for each decode step, layer and KV head of one sequence, the true
// share of attention each KV block drew (exact attention, the KV head's query heads
// together) and Quest's score of each block (the bound of q.k from its key bounds). What
// `tierlm kv-report` (eval/kv_report.h) replays to measure how much of the true attention
// each selection policy would have read, at any budget, without running the model again.
//
// File format (little-endian): "TLKVTRC1", u32 n_layer, u32 n_head_kv, u32 block_size,
// u32 n_records, then per record: u64 pos, u32 layer, u32 head, u32 n_blocks, n_blocks f32
// shares, n_blocks f32 scores. Load checks every count against the file's size.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tierlm::eval {

struct KvTraceRecord {
  int64_t pos = 0;  // the query's position
  int32_t layer = 0, head = 0;
  std::vector<float> share;  // per block: of this KV head's attention (sums to 1)
  std::vector<float> quest;  // per block: Quest's score
};

struct KvTrace {
  int32_t n_layer = 0, n_head_kv = 0, block_size = 0;
  std::vector<KvTraceRecord> records;  // by step, then layer, then head

  // The file's bytes, and the file.
  std::vector<uint8_t> Serialize() const;
  Status Save(const std::string& path) const;
  static Result<KvTrace> Load(const std::string& path);
  // Parses a trace from bytes (Load's work; `name` names the source in errors).
  static Result<KvTrace> Parse(std::span<const uint8_t> bytes, const std::string& name);
};

}  // namespace tierlm::eval
