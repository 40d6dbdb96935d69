// DiskBlockTier (prefix/disk_block_tier.h) and its on-disk format (prefix/disk_tier_format.h):
// round trips, restarts, every kind of damage (corrupt bytes, truncation, lost or corrupt
// index, a killed writer, garbage at the tail), the size bound under churn, re-appending of
// hot blocks, injected ENOSPC, the directory lock.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "prefix/block_record.h"
#include "prefix/disk_block_tier.h"
#include "prefix/disk_tier_format.h"

namespace tierlm::prefix {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kId = 0x6b76'6964'656e'7431ull;

// Deterministic bytes that differ by seed (xorshift64).
std::vector<uint8_t> Payload(uint64_t seed, size_t n) {
  std::vector<uint8_t> v(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x1234567;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(v.data() + i, &x, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<uint8_t>(x >> (8 * (i % 8)));
  return v;
}

std::vector<uint64_t> Hashes(uint64_t first, size_t n) {
  std::vector<uint64_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = 1000 + first + i;
  return h;
}

uint64_t DirBytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

size_t DirFiles(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

std::vector<fs::path> Segments(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("segment-", 0) == 0) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

void FlipByte(const fs::path& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x5a;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

void AppendBytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

class PrefixDiskTier : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "tierlm-disk-tier-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = root_ / "cache";  // Open creates it
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  DiskTierOptions Options(uint64_t capacity = 8ull << 20, int32_t n_segments = 4) const {
    DiskTierOptions o;
    o.dir = dir_.string();
    o.capacity_bytes = capacity;
    o.n_segments = n_segments;
    return o;
  }
  std::unique_ptr<DiskBlockTier> OpenTier(const DiskTierOptions& o) {
    auto r = DiskBlockTier::Open(o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  // Stores blocks [first, first + n) of `bytes` each (payload seed = hash).
  static void StoreBlocks(BlockTier& tier, uint64_t first, size_t n, size_t bytes) {
    for (uint64_t h : Hashes(first, n)) tier.Store(kId, h, Payload(h, bytes));
  }
  // Loads the chain and checks every payload handed over against what was stored.
  static size_t LoadChecked(BlockTier& tier, const std::vector<uint64_t>& hashes, size_t bytes,
                            uint64_t identity = kId) {
    size_t expect_index = 0;
    const size_t n = tier.Load(identity, hashes, bytes, [&](size_t i, std::span<const uint8_t> payload) {
      EXPECT_EQ(i, expect_index++);
      const std::vector<uint8_t> want = Payload(hashes[i], bytes);
      EXPECT_TRUE(payload.size() == want.size() && std::equal(payload.begin(), payload.end(), want.begin()))
          << "wrong bytes for block " << i;
      return true;
    });
    EXPECT_EQ(n, expect_index);
    return n;
  }
  // Offset of block k's record in a segment that holds records of `bytes` from the start.
  static uint64_t RecordOffset(size_t k, size_t bytes) {
    return kSegmentHeaderBytes + k * (kRecordHeaderBytes + bytes);
  }

  fs::path root_, dir_;
};

TEST_F(PrefixDiskTier, StoreThenLoadRoundTripsAfterFlush) {
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_EQ(tier->name(), "disk");
  StoreBlocks(*tier, 0, 12, 10000);
  tier->Flush();
  const auto h = Hashes(0, 12);
  EXPECT_EQ(tier->Contains(kId, h), 12u);
  EXPECT_EQ(LoadChecked(*tier, h, 10000), 12u);
  const TierCounters c = tier->Counters();
  EXPECT_EQ(c.stored, 12u);
  EXPECT_EQ(c.hits, 12u);
  EXPECT_EQ(c.lookups, 12u);
  EXPECT_EQ(c.misses, 0u);
  EXPECT_EQ(c.bytes_read, 12u * 10000);
  EXPECT_EQ(c.bytes_written, 12u * (10000 + kRecordHeaderBytes));
  EXPECT_EQ(c.resident_blocks, 12u);
  EXPECT_GE(c.resident_bytes, 12u * 10000);
  EXPECT_GT(c.load_seconds, 0);
  // One segment file, never one file per block.
  EXPECT_EQ(Segments(dir_).size(), 1u);
}

TEST_F(PrefixDiskTier, ABlockAlreadyHeldIsNotWrittenAgain) {
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  StoreBlocks(*tier, 0, 3, 5000);
  StoreBlocks(*tier, 0, 3, 5000);  // queued already
  tier->Flush();
  StoreBlocks(*tier, 0, 3, 5000);  // on disk already
  tier->Flush();
  EXPECT_EQ(tier->Counters().stored, 3u);
  EXPECT_EQ(tier->Counters().dropped, 0u);
  EXPECT_EQ(tier->Counters().bytes_written, 3u * (5000 + kRecordHeaderBytes));
}

TEST_F(PrefixDiskTier, ARestartSeesTheBlocksThroughTheIndex) {
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 20, 30000);
  }  // the destructor flushes and writes the index
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_TRUE(tier->open_info().index_valid);
  EXPECT_EQ(tier->open_info().segments_scanned, 0);
  EXPECT_EQ(tier->open_info().blocks, 20u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 20), 30000), 20u);
  // And it carries on appending to the same directory.
  StoreBlocks(*tier, 20, 5, 30000);
  tier->Flush();
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 25), 30000), 25u);
}

TEST_F(PrefixDiskTier, ContainsCountsFromTheFirstAndStopsAtTheFirstMissing) {
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  auto h = Hashes(0, 6);
  for (size_t i : {0, 1, 2, 4, 5}) tier->Store(kId, h[i], Payload(h[i], 2000));
  tier->Flush();
  EXPECT_EQ(tier->Contains(kId, h), 3u);
  EXPECT_EQ(tier->Contains(kId, std::span<const uint64_t>(h).subspan(4)), 2u);
  EXPECT_EQ(tier->Contains(kId, std::span<const uint64_t>(h).subspan(3)), 0u);
  EXPECT_EQ(tier->Contains(kId, {}), 0u);
  EXPECT_EQ(LoadChecked(*tier, h, 2000), 3u);
  EXPECT_EQ(tier->Counters().misses, 1u);  // block 3
  EXPECT_EQ(tier->Counters().lookups, 4u);
}

TEST_F(PrefixDiskTier, ACorruptPayloadByteIsAMissAndTheBlocksBeforeItStillHit) {
  constexpr size_t kBytes = 20000;
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 6, kBytes);
  }
  const auto segs = Segments(dir_);
  ASSERT_EQ(segs.size(), 1u);
  FlipByte(segs[0], RecordOffset(3, kBytes) + kRecordHeaderBytes + 777);
  const auto h = Hashes(0, 6);
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    EXPECT_EQ(tier->Contains(kId, h), 6u);  // the index cannot know
    EXPECT_EQ(LoadChecked(*tier, h, kBytes), 3u);
    const TierCounters c = tier->Counters();
    EXPECT_EQ(c.hits, 3u);
    EXPECT_EQ(c.misses, 1u);
    EXPECT_EQ(c.corrupt, 1u);
    EXPECT_EQ(tier->Contains(kId, h), 3u);  // removed from the index
    EXPECT_EQ(tier->Load(kId, std::span<const uint64_t>(h).subspan(3), kBytes,
                         [](size_t, std::span<const uint8_t>) { return true; }),
              0u);  // a chain starting at a removed block
  }
  auto tier = OpenTier(Options());  // and it stays removed across a restart
  ASSERT_TRUE(tier);
  EXPECT_EQ(tier->Contains(kId, h), 3u);
}

TEST_F(PrefixDiskTier, ACorruptRecordHeaderIsAMiss) {
  constexpr size_t kBytes = 5000;
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 4, kBytes);
  }
  FlipByte(Segments(dir_)[0], RecordOffset(1, kBytes) + 20);  // block 1's identity field
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 4), kBytes), 1u);
  EXPECT_EQ(tier->Counters().corrupt, 1u);
}

TEST_F(PrefixDiskTier, ATruncatedSegmentMissesEverythingAfterTheCut) {
  constexpr size_t kBytes = 20000;
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 8, kBytes);
  }
  const auto seg = Segments(dir_).at(0);
  fs::resize_file(seg, RecordOffset(5, kBytes) + 1000);  // in the middle of block 5's payload
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_EQ(tier->open_info().segments_scanned, 1);
  EXPECT_EQ(tier->open_info().bytes_cut, 1000u);
  const auto h = Hashes(0, 8);
  EXPECT_EQ(tier->Contains(kId, h), 5u);
  EXPECT_EQ(LoadChecked(*tier, h, kBytes), 5u);
  EXPECT_EQ(tier->Counters().corrupt, 0u);
  // The lost blocks can be stored again, right after the last whole record.
  StoreBlocks(*tier, 5, 3, kBytes);
  tier->Flush();
  EXPECT_EQ(LoadChecked(*tier, h, kBytes), 8u);
}

TEST_F(PrefixDiskTier, ATruncationWhileRunningIsAMissNotACrash) {
  constexpr size_t kBytes = 20000;
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  StoreBlocks(*tier, 0, 4, kBytes);
  tier->Flush();
  fs::resize_file(Segments(dir_).at(0), RecordOffset(2, kBytes) + 10);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 4), kBytes), 2u);
  EXPECT_EQ(tier->Counters().misses, 1u);
}

TEST_F(PrefixDiskTier, ADeletedIndexIsRebuiltFromTheSegments) {
  constexpr size_t kBytes = 100000;
  {
    auto tier = OpenTier(Options());  // 4 segments of ~2 MiB: the blocks span three
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 50, kBytes);
  }
  ASSERT_GE(Segments(dir_).size(), 3u);
  ASSERT_TRUE(fs::remove(dir_ / "index"));
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_FALSE(tier->open_info().index_found);
  EXPECT_EQ(tier->open_info().segments_scanned, tier->open_info().segments_found);
  const uint64_t held = tier->Counters().resident_blocks;
  EXPECT_GT(held, 30u);
  // The blocks held are the newest ones (the oldest segment went first), all intact.
  const auto h = Hashes(50 - held, held);
  EXPECT_EQ(LoadChecked(*tier, h, kBytes), held);
  EXPECT_TRUE(fs::exists(dir_ / "index"));  // written again at Open
}

TEST_F(PrefixDiskTier, ACorruptIndexIsRebuilt) {
  constexpr size_t kBytes = 30000;
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 10, kBytes);
  }
  FlipByte(dir_ / "index", 100);
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    EXPECT_TRUE(tier->open_info().index_found);
    EXPECT_FALSE(tier->open_info().index_valid);
    EXPECT_FALSE(tier->open_info().index_problem.empty());
    EXPECT_EQ(tier->open_info().segments_scanned, 1);
    EXPECT_EQ(LoadChecked(*tier, Hashes(0, 10), kBytes), 10u);
  }
  // Garbage of another size.
  {
    const int fd = ::open((dir_ / "index").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    const auto garbage = Payload(7, 333);
    ASSERT_EQ(::write(fd, garbage.data(), garbage.size()), 333);
    ::close(fd);
  }
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_FALSE(tier->open_info().index_valid);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 10), kBytes), 10u);
}

TEST_F(PrefixDiskTier, AStaleIndexIsCheckedAgainstTheSegments) {
  constexpr size_t kBytes = 30000;
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 4, kBytes);
  }
  const std::string saved = (root_ / "index.saved").string();
  fs::copy_file(dir_ / "index", saved);
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 4, 4, kBytes);  // appended to the same segment
  }
  fs::copy_file(saved, dir_ / "index", fs::copy_options::overwrite_existing);  // an index from before
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_TRUE(tier->open_info().index_valid);
  EXPECT_EQ(tier->open_info().segments_scanned, 1);  // its size no longer matches
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 8), kBytes), 8u);
}

TEST_F(PrefixDiskTier, AKilledWriterLeavesBlocksThatAReopenFinds) {
  constexpr size_t kBytes = 40000;
  const DiskTierOptions o = Options(2ull << 20, 4);  // segments of ~480 KiB: 30 blocks span three
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto r = DiskBlockTier::Open(o);
    if (!r.ok()) ::_exit(1);
    auto& tier = *r.value();
    for (uint64_t h : Hashes(0, 30)) tier.Store(kId, h, Payload(h, kBytes));
    tier.Flush();
    ::kill(::getpid(), SIGKILL);  // no destructor: the active segment is not in the index
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  ASSERT_GE(Segments(dir_).size(), 3u);
  auto tier = OpenTier(o);  // the lock died with the child
  ASSERT_TRUE(tier);
  EXPECT_TRUE(tier->open_info().index_valid);  // written when segments were sealed
  EXPECT_GE(tier->open_info().segments_scanned, 1);
  EXPECT_EQ(tier->Contains(kId, Hashes(0, 30)), 30u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 30), kBytes), 30u);
}

TEST_F(PrefixDiskTier, GarbageAndATornRecordAtTheActiveTailAreCutOff) {
  constexpr size_t kBytes = 10000;
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 5, kBytes);
  }
  const auto seg = Segments(dir_).at(0);
  const uint64_t whole = fs::file_size(seg);
  // A record of block 5 whose write was cut short, as a crash leaves it.
  std::vector<uint8_t> torn = EncodeRecord(kId, Hashes(5, 1)[0], Payload(Hashes(5, 1)[0], kBytes));
  torn.resize(torn.size() / 2);
  AppendBytes(seg, torn);
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    EXPECT_EQ(tier->open_info().bytes_cut, torn.size());
    EXPECT_EQ(fs::file_size(seg), whole);
    EXPECT_EQ(tier->Contains(kId, Hashes(0, 6)), 5u);
    EXPECT_EQ(LoadChecked(*tier, Hashes(0, 6), kBytes), 5u);
  }
  AppendBytes(seg, Payload(99, 5000));  // plain garbage
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_EQ(tier->open_info().bytes_cut, 5000u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 5), kBytes), 5u);
  StoreBlocks(*tier, 5, 1, kBytes);
  tier->Flush();
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 6), kBytes), 6u);
}

TEST_F(PrefixDiskTier, ASegmentWithABadHeaderIsDeleted) {
  constexpr size_t kBytes = 10000;
  {
    auto tier = OpenTier(Options());
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 3, kBytes);
  }
  FlipByte(Segments(dir_).at(0), 20);  // its generation
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  EXPECT_EQ(tier->open_info().segments_deleted, 1);
  EXPECT_EQ(tier->Contains(kId, Hashes(0, 3)), 0u);
  EXPECT_TRUE(Segments(dir_).empty());
  StoreBlocks(*tier, 0, 3, kBytes);
  tier->Flush();
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 3), kBytes), 3u);
}

TEST_F(PrefixDiskTier, TheDirectoryStaysWithinCapacityUnderChurn) {
  constexpr uint64_t kCapacity = 64ull << 20;
  constexpr size_t kBytes = 300 << 10;
  constexpr size_t kBlocks = 1000;
  auto tier = OpenTier(Options(kCapacity, 8));
  ASSERT_TRUE(tier);
  const uint64_t per_segment = (tier->layout().segment_bytes - kSegmentHeaderBytes) / (kBytes + kRecordHeaderBytes);
  for (size_t first = 0; first < kBlocks; first += 50) {
    StoreBlocks(*tier, first, 50, kBytes);
    tier->Flush();
    ASSERT_LE(DirBytes(dir_), kCapacity) << "after " << first + 50 << " blocks";
    ASSERT_LE(DirFiles(dir_), 8u + 3);
    ASSERT_LE(tier->Counters().resident_bytes, kCapacity);
  }
  const TierCounters c = tier->Counters();
  EXPECT_EQ(c.stored, kBlocks);
  EXPECT_EQ(c.dropped, 0u);
  EXPECT_EQ(c.evicted + c.resident_blocks, kBlocks);
  EXPECT_GE(c.evicted, kBlocks - 8 * per_segment);
  EXPECT_GE(c.resident_blocks, 7 * per_segment);
  EXPECT_EQ(Segments(dir_).size(), 8u);
  // The newest blocks hit, the oldest are gone.
  const auto recent = Hashes(kBlocks - 100, 100);
  EXPECT_EQ(tier->Contains(kId, recent), 100u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(kBlocks - 10, 10), kBytes), 10u);
  EXPECT_EQ(tier->Contains(kId, Hashes(0, 100)), 0u);
  tier.reset();
  EXPECT_LE(DirBytes(dir_), kCapacity);
}

TEST_F(PrefixDiskTier, HotBlocksAreReappendedAndSurviveChurn) {
  constexpr size_t kBytes = 50000;
  auto tier = OpenTier(Options(4ull << 20, 8));  // segments of ~496 KiB, 9 blocks each
  ASSERT_TRUE(tier);
  const uint64_t hot = 1, cold = 2;
  tier->Store(kId, hot, Payload(hot, kBytes));
  tier->Store(kId, cold, Payload(cold, kBytes));
  for (uint64_t round = 0; round < 60; ++round) {
    StoreBlocks(*tier, round * 9, 9, kBytes);  // about one segment a round
    tier->Flush();
    ASSERT_EQ(LoadChecked(*tier, {hot}, kBytes), 1u) << "round " << round;
    tier->Flush();  // the re-append, when there is one
  }
  EXPECT_EQ(tier->Contains(kId, std::vector<uint64_t>{cold}), 0u);
  EXPECT_EQ(tier->Contains(kId, std::vector<uint64_t>{hot}), 1u);
  EXPECT_GT(tier->Counters().evicted, 400u);
  // Re-appends are written bytes, not stored blocks.
  EXPECT_EQ(tier->Counters().stored, 2u + 60 * 9);
  EXPECT_GT(tier->Counters().bytes_written, tier->Counters().stored * (kBytes + kRecordHeaderBytes));
  EXPECT_LE(DirBytes(dir_), 4ull << 20);
}

TEST_F(PrefixDiskTier, InjectedNoSpaceDropsAndCountsAndTheTierCarriesOn) {
  constexpr size_t kBytes = 100000;
  DiskTierOptions o = Options(8ull << 20, 4);
  o.inject_disk_bytes = 1 << 20;  // room for the segment header and 10 records
  auto tier = OpenTier(o);
  ASSERT_TRUE(tier);
  StoreBlocks(*tier, 0, 20, kBytes);
  tier->Flush();
  TierCounters c = tier->Counters();
  EXPECT_EQ(c.stored, 10u);
  EXPECT_EQ(c.dropped, 10u);
  EXPECT_GE(c.errors, 10u);
  // The torn 11th record was cut off again.
  EXPECT_EQ(fs::file_size(Segments(dir_).at(0)), RecordOffset(10, kBytes));
  EXPECT_EQ(tier->Contains(kId, Hashes(0, 20)), 10u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 20), kBytes), 10u);
  // Space returns: later writes succeed.
  tier->SetInjectDiskBytes(std::numeric_limits<uint64_t>::max());
  StoreBlocks(*tier, 10, 5, kBytes);
  tier->Flush();
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 15), kBytes), 15u);
  c = tier->Counters();
  EXPECT_EQ(c.stored, 15u);
  tier.reset();
  auto again = OpenTier(Options(8ull << 20, 4));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->open_info().segments_scanned, 0);
  EXPECT_EQ(LoadChecked(*again, Hashes(0, 15), kBytes), 15u);
}

TEST_F(PrefixDiskTier, NoSpaceForEvenASegmentHeaderIsNotACrash) {
  DiskTierOptions o = Options();
  o.inject_disk_bytes = 10;
  auto tier = OpenTier(o);
  ASSERT_TRUE(tier);
  StoreBlocks(*tier, 0, 5, 1000);
  tier->Flush();
  EXPECT_EQ(tier->Counters().dropped, 5u);
  EXPECT_EQ(tier->Counters().stored, 0u);
  EXPECT_EQ(tier->Contains(kId, Hashes(0, 5)), 0u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 5), 1000), 0u);
  EXPECT_TRUE(Segments(dir_).empty());
  tier->SetInjectDiskBytes(std::numeric_limits<uint64_t>::max());
  StoreBlocks(*tier, 0, 5, 1000);
  tier->Flush();
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 5), 1000), 5u);
}

TEST_F(PrefixDiskTier, TooMuchQueuedOrTooLargeIsDropped) {
  DiskTierOptions o = Options(2ull << 20, 4);
  o.max_queued_bytes = 0;
  auto tier = OpenTier(o);
  ASSERT_TRUE(tier);
  tier->Store(kId, 1, Payload(1, 100));
  tier->Flush();
  EXPECT_EQ(tier->Counters().dropped, 1u);
  tier.reset();
  auto big = OpenTier(Options(2ull << 20, 4));
  ASSERT_TRUE(big);
  big->Store(kId, 2, Payload(2, big->layout().segment_bytes));  // larger than a segment
  big->Flush();
  EXPECT_EQ(big->Counters().dropped, 1u);
  EXPECT_EQ(big->Contains(kId, std::vector<uint64_t>{2}), 0u);
}

TEST_F(PrefixDiskTier, ASecondOpenOfTheSameDirectoryFailsClearly) {
  auto first = OpenTier(Options());
  ASSERT_TRUE(first);
  auto second = DiskBlockTier::Open(Options());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status().message();
  EXPECT_NE(second.status().message().find(dir_.string()), std::string::npos);
  first.reset();
  EXPECT_TRUE(DiskBlockTier::Open(Options()).ok());
}

TEST_F(PrefixDiskTier, AWrongIdentityIsAMiss) {
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  StoreBlocks(*tier, 0, 3, 4000);
  tier->Flush();
  EXPECT_EQ(tier->Contains(kId + 1, Hashes(0, 3)), 0u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 3), 4000, kId + 1), 0u);
  EXPECT_EQ(tier->Counters().misses, 1u);
  EXPECT_EQ(tier->Counters().corrupt, 0u);
  EXPECT_EQ(LoadChecked(*tier, Hashes(0, 3), 4000), 3u);
}

TEST_F(PrefixDiskTier, APayloadSizeMismatchIsAMiss) {
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  StoreBlocks(*tier, 0, 3, 4000);
  tier->Flush();
  size_t calls = 0;
  EXPECT_EQ(tier->Load(kId, Hashes(0, 3), 4001, [&](size_t, std::span<const uint8_t>) { return ++calls, true; }), 0u);
  EXPECT_EQ(calls, 0u);
  EXPECT_EQ(tier->Counters().misses, 1u);
  EXPECT_EQ(tier->Counters().corrupt, 1u);
  // payload_bytes 0 takes any size.
  EXPECT_EQ(tier->Load(kId, Hashes(1, 2), 0, [](size_t, std::span<const uint8_t> p) { return p.size() == 4000; }), 2u);
}

TEST_F(PrefixDiskTier, ASinkThatRefusesStopsTheLoad) {
  auto tier = OpenTier(Options());
  ASSERT_TRUE(tier);
  StoreBlocks(*tier, 0, 20, 4000);
  tier->Flush();
  const size_t n = tier->Load(kId, Hashes(0, 20), 4000, [](size_t i, std::span<const uint8_t>) { return i < 6; });
  EXPECT_EQ(n, 6u);
  EXPECT_EQ(tier->Counters().hits, 6u);
  EXPECT_EQ(tier->Counters().misses, 0u);
}

TEST_F(PrefixDiskTier, BadOptionsAreRefused) {
  DiskTierOptions o = Options(1 << 20, 8);
  o.capacity_bytes = 100 << 10;
  EXPECT_EQ(DiskBlockTier::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = Options(8 << 20, 1);
  EXPECT_EQ(DiskBlockTier::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = Options();
  o.dir = "";
  EXPECT_EQ(DiskBlockTier::Open(o).status().code(), StatusCode::kInvalidArgument);
  // A directory that cannot be made: its parent is a regular file.
  const int fd = ::open((root_ / "file").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ::close(fd);
  o = Options();
  o.dir = (root_ / "file" / "cache").string();
  auto r = DiskBlockTier::Open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find(o.dir), std::string::npos) << r.status().message();
}

TEST_F(PrefixDiskTier, ShrinkingTheCapacityEvictsWhatNoLongerFits) {
  constexpr size_t kBytes = 100000;
  {
    auto tier = OpenTier(Options(8ull << 20, 4));
    ASSERT_TRUE(tier);
    StoreBlocks(*tier, 0, 60, kBytes);
  }
  auto tier = OpenTier(Options(2ull << 20, 4));
  ASSERT_TRUE(tier);
  EXPECT_GT(tier->open_info().segments_deleted, 0);
  StoreBlocks(*tier, 60, 10, kBytes);
  tier->Flush();
  EXPECT_LE(DirBytes(dir_), 2ull << 20);
  EXPECT_EQ(LoadChecked(*tier, Hashes(60, 10), kBytes), 10u);
}

TEST_F(PrefixDiskTier, LoadsRaceTheWriterAndItsEvictionsWithoutWrongBytes) {
  constexpr size_t kBytes = 30000;
  auto tier = OpenTier(Options(2ull << 20, 4));  // ~16 blocks a segment, ~60 held
  ASSERT_TRUE(tier);
  std::atomic<bool> done{false};
  std::thread reader([&] {  // Counters from another thread, all along
    while (!done.load()) {
      const TierCounters c = tier->Counters();
      EXPECT_LE(c.resident_bytes, 2ull << 20);
    }
  });
  size_t hits = 0;
  for (uint64_t first = 0; first < 600; first += 20) {
    // Now and then everything stored so far is written; then at least the newest 48 blocks
    // are held, and the 20 stored next evict at most up to block first - 28.
    if (first % 100 == 0) tier->Flush();
    StoreBlocks(*tier, first, 20, kBytes);  // the writer appends, rolls and evicts meanwhile
    if (first >= 40) hits += LoadChecked(*tier, Hashes(first - 28, 20), kBytes);
  }
  tier->Flush();
  done = true;
  reader.join();
  EXPECT_GE(hits, 5u * 20);  // the rounds after a Flush
  const TierCounters c = tier->Counters();
  EXPECT_EQ(c.corrupt, 0u);
  EXPECT_EQ(c.errors, 0u);
  EXPECT_LE(DirBytes(dir_), 2ull << 20);
}

// The format, without files.

TEST(PrefixDiskFormat, AnIndexRoundTripsAndAnyFlippedByteIsRefused) {
  IndexFile index;
  index.next_generation = 9;
  index.segments = {{3, 0xabc, 10000}, {7, 0xdef, 500}};
  index.entries = {{1, 2, 3, 64, 1000}, {1, 3, 7, 64, 436}, {5, 6, 3, 1064, 8936}};
  const std::vector<uint8_t> bytes = EncodeIndex(index);
  EXPECT_EQ(bytes.size(), IndexFileBytes(2, 3));
  auto parsed = ParseIndex(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, index);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::vector<uint8_t> bad = bytes;
    bad[i] ^= 1;
    EXPECT_FALSE(ParseIndex(bad).ok()) << "byte " << i;
  }
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(ParseIndex(std::span<const uint8_t>(bytes).first(n)).ok()) << n << " bytes";
  // Well-formed but inconsistent: an entry past its segment's end, an unlisted segment.
  IndexFile past = index;
  past.entries[1].bytes = 437;
  EXPECT_NE(ParseIndex(EncodeIndex(past)).status().message().find("outside segment"), std::string::npos);
  IndexFile unlisted = index;
  unlisted.entries[0].generation = 4;
  EXPECT_FALSE(ParseIndex(EncodeIndex(unlisted)).ok());
  IndexFile unsorted = index;
  std::swap(unsorted.segments[0], unsorted.segments[1]);
  EXPECT_FALSE(ParseIndex(EncodeIndex(unsorted)).ok());
}

TEST(PrefixDiskFormat, ASegmentScanKeepsEveryWholeRecordBeforeACut) {
  std::vector<uint8_t> seg(kSegmentHeaderBytes);
  EncodeSegmentHeader({42, 77}, seg.data());
  std::vector<uint64_t> ends;
  for (uint64_t h = 0; h < 5; ++h) {
    const auto rec = EncodeRecord(kId, h, Payload(h, 100 * h));
    seg.insert(seg.end(), rec.begin(), rec.end());
    ends.push_back(seg.size());
  }
  const SegmentScan whole = ScanSegmentBytes(seg);
  ASSERT_TRUE(whole.header.ok());
  EXPECT_EQ(whole.segment, (SegmentHeader{42, 77}));
  ASSERT_EQ(whole.records.size(), 5u);
  EXPECT_EQ(whole.valid_end, seg.size());
  EXPECT_TRUE(whole.stopped.empty());
  EXPECT_EQ(whole.records[2].offset, ends[1]);
  EXPECT_EQ(whole.records[2].bytes, kRecordHeaderBytes + 200);
  for (size_t cut = 0; cut <= seg.size(); ++cut) {
    const SegmentScan s = ScanSegmentBytes(std::span<const uint8_t>(seg).first(cut));
    if (cut < kSegmentHeaderBytes) {
      EXPECT_FALSE(s.header.ok());
      continue;
    }
    const size_t want = static_cast<size_t>(std::upper_bound(ends.begin(), ends.end(), cut) - ends.begin());
    ASSERT_EQ(s.records.size(), want) << "cut at " << cut;
    EXPECT_LE(s.valid_end, cut);
    EXPECT_EQ(s.stopped.empty(), s.valid_end == cut);
  }
  // A flipped byte in a record header ends the scan there.
  std::vector<uint8_t> bad = seg;
  bad[ends[2] + 30] ^= 1;
  const SegmentScan s = ScanSegmentBytes(bad);
  EXPECT_EQ(s.records.size(), 3u);
  EXPECT_EQ(s.valid_end, ends[2]);
  EXPECT_FALSE(s.stopped.empty());
}

}  // namespace
}  // namespace tierlm::prefix
