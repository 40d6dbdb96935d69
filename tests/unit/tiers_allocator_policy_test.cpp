// Bookkeeping of the tiers on tiny pools: first-fit allocation and fragmentation,
// eviction orders of each policy, and the learned access schedule.
#include <gtest/gtest.h>

#include <vector>

#include "tiers/access_schedule.h"
#include "tiers/first_fit_allocator.h"
#include "tiers/lru_policy.h"
#include "tiers/pinned_set_policy.h"

#include "policy_test_util.h"

namespace tierlm {
namespace {

using testing::Victims;

TEST(TiersFirstFit, AllocatesLowestFitAndCoalesces) {
  FirstFitAllocator a(10, 1);  // ten one-byte granules
  EXPECT_EQ(a.Allocate(3), 0u);
  EXPECT_EQ(a.Allocate(3), 3u);
  EXPECT_EQ(a.Allocate(3), 6u);
  EXPECT_EQ(a.Allocate(2), std::nullopt);  // one byte left
  EXPECT_EQ(a.allocated(), 9u);
  a.Free(3);  // hole [3,6)
  EXPECT_EQ(a.free_runs(), 2u);
  EXPECT_EQ(a.Allocate(4), std::nullopt);  // 4 free bytes, but not contiguous: fragmentation
  EXPECT_EQ(a.Allocate(2), 3u);            // first fit: into the hole
  a.Free(0);
  a.Free(6);
  // [0,3) free, [3,5) used, [5,10) free
  EXPECT_EQ(a.largest_free_run(), 5u);
  a.Free(3);  // merges with both neighbours
  EXPECT_EQ(a.free_runs(), 1u);
  EXPECT_EQ(a.largest_free_run(), 10u);
  EXPECT_EQ(a.allocated(), 0u);
  EXPECT_EQ(a.peak_allocated(), 9u);
  EXPECT_EQ(a.Allocate(0), std::nullopt);
  EXPECT_EQ(a.Allocate(10), 0u);
}

TEST(TiersFirstFit, RoundsToGranule) {
  FirstFitAllocator a(4096 * 3 + 100, 4096);
  EXPECT_EQ(a.capacity(), 4096u * 3);
  EXPECT_EQ(a.Allocate(1), 0u);
  EXPECT_EQ(a.SizeAt(0), 4096u);
  EXPECT_EQ(a.Allocate(4097), 4096u);
  EXPECT_EQ(a.Allocate(1), std::nullopt);
}

TEST(TiersLruPolicy, EvictsLeastRecentlyUsedFirst) {
  LruPolicy p;
  for (EntryId id : {1, 2, 3, 4}) p.OnInsert(id);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{1, 2, 3, 4}));
  p.OnAccess(2);
  p.OnAccess(1);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{3, 4, 2, 1}));
  p.OnErase(4);
  p.OnInsert(5);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{3, 2, 1, 5}));
}

TEST(TiersPinnedSetPolicy, PinnedNeverOfferedRingIsFifo) {
  PinnedSetPolicy p({10, 11});
  for (EntryId id : {10, 1, 11, 2, 3}) p.OnInsert(id);
  EXPECT_TRUE(p.PinnedForever(10));
  EXPECT_FALSE(p.PinnedForever(1));
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{1, 2, 3}));
  p.OnAccess(1);  // use does not reorder the ring
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{1, 2, 3}));
  p.OnErase(1);
  p.OnInsert(1);
  EXPECT_EQ(Victims(p), (std::vector<EntryId>{2, 3, 1}));
}

TEST(TiersAccessSchedule, LearnsTheCycleAndPredicts) {
  AccessSchedule s;
  const std::vector<EntryId> pass = {0, 1, 2, 3, 4, 0};  // 0 twice: tied embedding/output
  for (EntryId id : pass) s.Record(id);
  EXPECT_FALSE(s.learned());
  s.Record(0);
  EXPECT_FALSE(s.learned());
  s.Record(1);  // 0,1 again: the second pass began
  ASSERT_TRUE(s.learned());
  EXPECT_EQ(s.cycle(), pass);
  EXPECT_EQ(s.Next(3), (std::vector<EntryId>{2, 3, 4}));
  s.Record(2);
  s.Record(3);
  s.Record(4);
  EXPECT_EQ(s.Next(2), (std::vector<EntryId>{0, 0}));
  // A pass that skips the output head re-synchronizes at the embedding.
  s.Record(0);  // taken as the output use (position 5)
  s.Record(0);  // the next pass's embedding
  EXPECT_EQ(s.Next(2), (std::vector<EntryId>{1, 2}));
  s.Record(99);  // unknown: cursor stays
  EXPECT_EQ(s.Next(1), (std::vector<EntryId>{1}));
}

}  // namespace
}  // namespace tierlm
