// A STREAM-style triad (a[i] = b[i] + s * c[i]) to measure sustainable DRAM bandwidth
// with the same threads the kernels use: the yardstick for memory-bound decode.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace tierlm {

// Best of `reps` triads over three arrays of `array_bytes` each; bytes/s counted as
// STREAM does (two reads and one write per element).
double MeasureTriadBandwidth(ThreadPool* pool, uint64_t array_bytes = 128ull << 20, int reps = 5);

}  // namespace tierlm
