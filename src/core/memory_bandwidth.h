// A STREAM-style triad (a[i] = b[i] + s * c[i]) and a pure read to measure sustainable DRAM
// bandwidth with the same threads the kernels use: the yardsticks for memory-bound decode,
// which only reads its weights (so the read probe is the tighter bound; a triad also writes).
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace tierlm {

// Best of `reps` triads over three arrays of `array_bytes` each; bytes/s counted as
// STREAM does (two reads and one write per element).
double MeasureTriadBandwidth(ThreadPool* pool, uint64_t array_bytes = 128ull << 20, int reps = 5);

// Best of `reps` passes reading (summing) one array of `array_bytes`, each thread a
// contiguous share; bytes/s read. 0 if the array cannot be allocated.
double MeasureReadBandwidth(ThreadPool* pool, uint64_t array_bytes, int reps = 3);

// How much the read probe must cover to measure memory, not the cache: twice the last-level
// cache the OS reports, at least 256 MiB, at most 1 GiB and an eighth of physical memory.
uint64_t ReadProbeBytes();

}  // namespace tierlm
