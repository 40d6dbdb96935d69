// ResidencyManager on tiny pools: exact eviction orders, admission answers, pins, I/O
// errors and recovery, and the hard budget.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>

#include "io/fault_injection_env.h"
#include "io/mem_storage_env.h"
#include "tiers/lru_policy.h"
#include "tiers/pinned_set_policy.h"
#include "tiers/residency_manager.h"

namespace tierlm {
namespace {

constexpr uint64_t kPage = 4096;

class TiersResidencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_.resize(16 * kPage);
    std::mt19937 rng(9);
    for (auto& b : bytes_) b = static_cast<uint8_t>(rng());
    mem_.WriteFile("pool.bin", bytes_);
    fault_ = std::make_unique<io::FaultInjectionEnv>(&mem_);
    file_ = std::move(fault_->OpenForRandomRead("pool.bin")).value();
  }

  // Entries 0..15, one page each; a pool of `pages` pages.
  std::unique_ptr<ResidencyManager> Make(uint64_t pages, std::unique_ptr<EvictionPolicy> policy) {
    ResidencyOptions o;
    o.budget_bytes = pages * kPage;
    o.record_evictions = true;
    auto m = std::move(ResidencyManager::Create(o, std::move(policy))).value();
    for (int i = 0; i < 16; ++i) {
      EntrySpec s;
      s.name = "e" + std::to_string(i);
      s.file = file_.get();
      s.offset = static_cast<uint64_t>(i) * kPage;
      s.size = kPage;
      EXPECT_EQ(*m->Register(s), static_cast<EntryId>(i));
    }
    return m;
  }

  void Touch(ResidencyManager& m, EntryId id) {
    auto pin = m.Acquire(id);
    ASSERT_TRUE(pin.ok()) << pin.status().ToString();
    ASSERT_EQ(0, std::memcmp(pin->data(), bytes_.data() + id * kPage, kPage));
  }

  std::vector<uint8_t> bytes_;
  io::MemStorageEnv mem_;
  std::unique_ptr<io::FaultInjectionEnv> fault_;
  std::unique_ptr<io::RandomAccessFile> file_;
};

TEST_F(TiersResidencyTest, LruEvictionOrderIsExact) {
  auto m = Make(3, std::make_unique<LruPolicy>());
  for (EntryId id : {0, 1, 2}) Touch(*m, id);
  EXPECT_TRUE(m->TakeEvictionLog().empty());
  Touch(*m, 3);  // evicts 0
  Touch(*m, 1);  // hit: 1 becomes most recent
  Touch(*m, 4);  // evicts 2
  Touch(*m, 0);  // evicts 3
  EXPECT_EQ(m->TakeEvictionLog(), (std::vector<EntryId>{0, 2, 3}));
  const ClassStats s = m->Stats().Total();
  EXPECT_EQ(s.acquires, 7u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 6u);
  EXPECT_EQ(s.reads, 6u);
  EXPECT_EQ(s.evictions, 3u);
}

TEST_F(TiersResidencyTest, PinnedEntriesAreNeverEvicted) {
  auto m = Make(3, std::make_unique<LruPolicy>());
  auto p0 = std::move(m->Acquire(0)).value();
  auto p1 = std::move(m->Acquire(1)).value();
  Touch(*m, 2);
  Touch(*m, 3);  // 0 and 1 are pinned: evicts 2
  EXPECT_EQ(m->TakeEvictionLog(), (std::vector<EntryId>{2}));
  EXPECT_EQ(m->pin_count(0), 1);
  auto p3 = std::move(m->Acquire(3)).value();
  EXPECT_EQ(m->pin_count(3), 1);
  auto r = m->Acquire(4);  // every page pinned, nothing in flight
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("live pins"), std::string::npos) << r.status().ToString();
  p1.Reset();
  Touch(*m, 4);  // now 1 can go
  EXPECT_EQ(m->TakeEvictionLog(), (std::vector<EntryId>{1}));
  EXPECT_EQ(m->state(0), EntryState::kResident);
}

TEST_F(TiersResidencyTest, PinnedSetSweepStreamsThroughTheRing) {
  auto policy = std::make_unique<PinnedSetPolicy>(std::unordered_set<EntryId>{0});
  auto m = Make(3, std::move(policy));
  for (int pass = 0; pass < 2; ++pass)
    for (EntryId id : {0, 1, 2, 3, 4}) Touch(*m, id);
  // Ring of two pages, oldest arrival first; 0 stays for good.
  EXPECT_EQ(m->TakeEvictionLog(), (std::vector<EntryId>{1, 2, 3, 4, 1, 2}));
  const ClassStats s = m->Stats().Total();
  EXPECT_EQ(s.hits, 1u);  // entry 0 in the second pass
  EXPECT_EQ(m->Stats().pinned_forever_bytes, kPage);
}

TEST_F(TiersResidencyTest, PrefetchAdmissionOkLaterImpossible) {
  auto m = Make(3, std::make_unique<LruPolicy>());
  const std::vector<EntryId> ids = {1, 2, 3, 4, 5};
  EXPECT_EQ(m->Prefetch(ids), (std::vector<Admit>{Admit::kOk, Admit::kOk, Admit::kOk, Admit::kLater, Admit::kLater}));
  // Prefetched entries not used yet are not evicted by another prefetch.
  EXPECT_EQ(m->Prefetch(std::vector<EntryId>{6}), std::vector<Admit>{Admit::kLater});
  Touch(*m, 1);  // a hit on a finished prefetch
  EXPECT_EQ(m->Stats().Total().prefetches_used, 1u);
  EXPECT_EQ(m->Stats().Total().hits, 1u);
  EXPECT_EQ(m->Prefetch(std::vector<EntryId>{6}), std::vector<Admit>{Admit::kOk});  // 1 was used: it may go
  EXPECT_EQ(m->TakeEvictionLog(), (std::vector<EntryId>{1}));
  // A demand read displaces an unused prefetch as a last resort.
  Touch(*m, 7);
  EXPECT_EQ(m->TakeEvictionLog(), (std::vector<EntryId>{2}));
  EXPECT_EQ(m->Stats().Total().prefetches_wasted, 1u);

  EntrySpec big;
  big.name = "big";
  big.file = file_.get();
  big.size = 4 * kPage;
  const EntryId b = *m->Register(big);
  EXPECT_EQ(m->Prefetch(std::vector<EntryId>{b}), std::vector<Admit>{Admit::kImpossible});
  auto r = m->Acquire(b);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_LE(m->Stats().peak_allocated_bytes, 3 * kPage);
}

TEST_F(TiersResidencyTest, IoErrorNamesEntryAndOffsetThenRecovers) {
  auto m = Make(3, std::make_unique<LruPolicy>());
  io::FaultSpec spec;
  spec.fail_begin = 2 * kPage + 10;
  spec.fail_end = 2 * kPage + 11;
  fault_->SetFaults(spec);
  Touch(*m, 1);
  auto r = m->Acquire(2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find("'e2'"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("offset 8192"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(m->state(2), EntryState::kAbsent);
  EXPECT_EQ(m->Stats().allocated_bytes, kPage);  // the failed read's slot came back
  // A failed prefetch is retried by the next demand read.
  EXPECT_EQ(m->Prefetch(std::vector<EntryId>{2}), std::vector<Admit>{Admit::kOk});
  fault_->ClearFaults();
  Touch(*m, 2);
  Touch(*m, 3);
  EXPECT_EQ(m->Stats().Total().io_errors, 2u);
  // Short reads and truncation are errors too, never resident garbage.
  spec = {};
  spec.short_read_one_in = 1;
  fault_->SetFaults(spec);
  EXPECT_EQ(m->Acquire(9).status().code(), StatusCode::kIoError);
  fault_->ClearFaults();
  Touch(*m, 9);
}

TEST_F(TiersResidencyTest, UnalignedEntriesShareNothingAndStayExact) {
  ResidencyOptions o;
  o.budget_bytes = 4 * kPage;
  auto m = std::move(ResidencyManager::Create(o, std::make_unique<LruPolicy>())).value();
  std::vector<EntryId> ids;
  std::vector<std::pair<uint64_t, uint64_t>> ranges = {{5, 100}, {4000, 200}, {8191, 4097}, {16 * kPage - 3, 3}};
  for (auto [off, len] : ranges) {
    EntrySpec s;
    s.name = "u" + std::to_string(off);
    s.file = file_.get();
    s.offset = off;
    s.size = len;
    ids.push_back(*m->Register(s));
  }
  EXPECT_EQ(m->SlotBytes(ids[2]), 2 * kPage);  // [8191, 12288) covers pages 1..2
  for (int round = 0; round < 3; ++round)
    for (size_t i = 0; i < ids.size(); ++i) {
      auto pin = m->Acquire(ids[i]);
      ASSERT_TRUE(pin.ok()) << pin.status().ToString();
      ASSERT_EQ(0, std::memcmp(pin->data(), bytes_.data() + ranges[i].first, ranges[i].second));
    }
  EXPECT_LE(m->Stats().peak_allocated_bytes, 4 * kPage);
  EntrySpec bad;
  bad.name = "bad";
  bad.file = file_.get();
  bad.offset = 16 * kPage - 1;
  bad.size = 2;
  EXPECT_EQ(m->Register(bad).status().code(), StatusCode::kInvalidArgument);
  bad.offset = 0;
  bad.writable = true;  // its home is not a spill file
  EXPECT_EQ(m->Register(bad).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierlm
