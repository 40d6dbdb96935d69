// The bandwidth probes behind `tierlm bench`'s bounds: the read probe's sum is right on every
// path and length, the probes report a positive rate, a probe too large to allocate reports
// 0 instead of failing, and the probe's size stays within its bounds. (Their speed is not
// checked here: speed is measured in benchmarks.)
#include "core/memory_bandwidth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <unistd.h>
#include <vector>

#include "core/read_sum.h"

namespace tierlm {
namespace {

TEST(MemoryBandwidthTest, SumWordsIsThePlainSumForEveryLength) {
  std::vector<uint64_t> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0x9E3779B97F4A7C15ull * (i + 1);  // sums wrap around
  for (int64_t n : {0, 1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 999, 1000}) {
    const uint64_t want = std::accumulate(v.begin(), v.begin() + n, uint64_t{0});
    EXPECT_EQ(SumWords(v.data(), n), want) << n;
    const int64_t m = n > 0 ? n - 1 : 0;  // from the second word: unaligned
    EXPECT_EQ(SumWords(v.data() + 1, m), std::accumulate(v.begin() + 1, v.begin() + 1 + m, uint64_t{0}))
        << "unaligned, " << m;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) EXPECT_EQ(SumWordsAvx2(v.data(), n), want) << n;
#endif
  }
}

TEST(MemoryBandwidthTest, ProbesReportAPositiveRateAndZeroWhenTheyCannotAllocate) {
  auto pool = ThreadPool::Create(2);
  ASSERT_TRUE(pool.ok());
  const double read = MeasureReadBandwidth(pool->get(), 16ull << 20, 2);
  EXPECT_GT(read, 0);
  EXPECT_TRUE(std::isfinite(read));
  const double triad = MeasureTriadBandwidth(pool->get(), 16ull << 20, 2);
  EXPECT_GT(triad, 0);
  EXPECT_EQ(MeasureReadBandwidth(pool->get(), 1ull << 62, 1), 0);  // 4 EiB: no machine has it
  EXPECT_EQ(MeasureReadBandwidth(pool->get(), 4, 1), 0);           // less than one word
}

TEST(MemoryBandwidthTest, ReadProbeSizeStaysWithinItsBounds) {
  const uint64_t bytes = ReadProbeBytes();
  const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  EXPECT_LE(bytes, 1ull << 30);
  EXPECT_LE(bytes, ram / 8);
  EXPECT_GE(bytes, std::min<uint64_t>(256ull << 20, ram / 8));
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) EXPECT_GE(bytes, std::min<uint64_t>({2 * static_cast<uint64_t>(l3), 1ull << 30, ram / 8}));
}

}  // namespace
}  // namespace tierlm
