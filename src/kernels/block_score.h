// Quest's block score (kv/quest_selector.h): for each block, the largest over a group of
// query heads of sum_i max(q_i * min_i, q_i * max_i), an upper bound on that head's dot
// product with any key of the block, from the block's per-channel key bounds.
#pragma once

#include <cstdint>

namespace tierlm {

// q: `group` query heads of hd floats. Block j's bounds (hd minimums, then hd maximums,
// binary16) are at base + ids[j] * stride. scores[j] for j < n. Sums in 16 lanes, folded in a
// fixed order on every path (AVX-512 where the CPU has it and hd % 16 == 0).
void QuestBlockScores(const float* q, int64_t group, int64_t hd, const uint16_t* base, int64_t stride,
                      const int32_t* ids, int64_t n, float* scores);

// The AVX-512 kernel; false (nothing done) when hd % 16 != 0.
bool QuestBlockScoresAvx512(const float* q, int64_t group, int64_t hd, const uint16_t* base, int64_t stride,
                            const int32_t* ids, int64_t n, float* scores);

}  // namespace tierlm
