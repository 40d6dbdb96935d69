// Measures how fast a file can be read with the engine's own read path (O_DIRECT and
// async queue when available): the SSD bandwidth that bounds streamed weights.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "io/storage_env.h"

namespace tierlm::io {

struct ReadBandwidth {
  double bytes_per_second = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Reads up to max_bytes of the file (from its middle, where page-cache copies of the
// header are least likely) in `chunk`-byte requests, `depth` in flight.
Result<ReadBandwidth> MeasureReadBandwidth(RandomAccessFile& file, uint64_t max_bytes = 1ull << 30,
                                           uint64_t chunk = 4ull << 20, int depth = 64);

}  // namespace tierlm::io
