// The sum of n 64-bit words: the read probe's inner loop (core/memory_bandwidth.cpp).
#pragma once

#include <cstdint>

namespace tierlm {

// Picks the AVX2 loop when the CPU has AVX2, else a portable one.
uint64_t SumWords(const uint64_t* p, int64_t n);

// The AVX2 loop (read_sum_avx2.cpp). REQUIRES: the CPU has AVX2.
uint64_t SumWordsAvx2(const uint64_t* p, int64_t n);

}  // namespace tierlm
