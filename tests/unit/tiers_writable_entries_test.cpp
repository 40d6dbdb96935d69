// Writable entries (KV blocks homed in a spill file): write-back before a slot is reused,
// reads only of what was written, discards, lost entries after a failed write, a full
// disk, and the real O_DIRECT spill file.
#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "io/fault_injection_env.h"
#include "io/mem_storage_env.h"
#include "io/posix_storage_env.h"
#include "tiers/lru_policy.h"
#include "tiers/mru_policy.h"
#include "tiers/residency_manager.h"

namespace tierlm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int kEntries = 8;

class WritableEntriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fault_ = std::make_unique<io::FaultInjectionEnv>(&mem_);
    spill_ = std::move(fault_->CreateSpillFile("test", kEntries * kPage)).value();
  }

  // Entries 0..7, one page each of the spill file; a pool of `pages` pages.
  std::unique_ptr<ResidencyManager> Make(uint64_t pages, std::unique_ptr<EvictionPolicy> policy = nullptr) {
    ResidencyOptions o;
    o.budget_bytes = pages * kPage;
    o.record_evictions = true;
    auto m = std::move(ResidencyManager::Create(o, policy ? std::move(policy) : std::make_unique<LruPolicy>())).value();
    for (int i = 0; i < kEntries; ++i) {
      EntrySpec s;
      s.name = "layer 0 block " + std::to_string(i);
      s.cls = EntryClass::kKv;
      s.file = spill_.get();
      s.offset = static_cast<uint64_t>(i) * kPage;
      s.size = kPage;
      s.writable = true;
      s.layer = 0;
      s.block = i;
      EXPECT_EQ(*m->Register(s), static_cast<EntryId>(i));
    }
    return m;
  }

  // Writes `fill` over the entry.
  static void Fill(ResidencyManager& m, EntryId id, uint8_t fill) {
    auto pin = m.AcquireForWrite(id);
    ASSERT_TRUE(pin.ok()) << pin.status().ToString();
    ASSERT_NE(pin->mutable_data(), nullptr);
    std::memset(pin->mutable_data(), fill, kPage);
  }
  // Expects every byte of the entry to be `fill`.
  static void Expect(ResidencyManager& m, EntryId id, uint8_t fill) {
    auto pin = m.Acquire(id);
    ASSERT_TRUE(pin.ok()) << pin.status().ToString();
    EXPECT_EQ(pin->mutable_data(), nullptr);  // a read pin cannot write
    for (uint64_t i = 0; i < kPage; ++i) ASSERT_EQ(pin->data()[i], fill) << "entry " << id << " byte " << i;
  }

  io::MemStorageEnv mem_;
  std::unique_ptr<io::FaultInjectionEnv> fault_;
  std::unique_ptr<io::SpillFile> spill_;
};

TEST_F(WritableEntriesTest, NeverWrittenEntriesStartAsZerosWithoutAnyRead) {
  auto m = Make(2);
  Expect(*m, 3, 0);
  const ClassStats s = m->Stats().per_class[static_cast<int>(EntryClass::kKv)];
  EXPECT_EQ(s.reads, 0u);
  EXPECT_EQ(spill_->stats().reads, 0u);
}

TEST_F(WritableEntriesTest, DirtyEntriesAreWrittenBackBeforeTheirSlotIsReusedAndReadBackExactly) {
  auto m = Make(2);
  Fill(*m, 0, 0xA0);
  Fill(*m, 1, 0xA1);
  EXPECT_EQ(spill_->stats().writes, 0u);  // both fit: nothing written yet
  Fill(*m, 2, 0xA2);                      // LRU victim 0 is dirty: written back first
  EXPECT_EQ(spill_->stats().writes, 1u);
  EXPECT_EQ(m->state(0), EntryState::kAbsent);
  Fill(*m, 3, 0xA3);  // victim 1, dirty
  EXPECT_EQ(spill_->stats().writes, 2u);
  EXPECT_EQ(m->TakeEvictionLog(), (std::vector<EntryId>{0, 1}));
  Expect(*m, 0, 0xA0);  // read back from the spill file (victim 2 written first)
  Expect(*m, 1, 0xA1);
  Expect(*m, 2, 0xA2);
  Expect(*m, 3, 0xA3);
  const ClassStats s = m->Stats().per_class[static_cast<int>(EntryClass::kKv)];
  EXPECT_EQ(s.writes, 4u);
  EXPECT_EQ(s.bytes_written, 4 * kPage);
  EXPECT_EQ(s.reads, 4u);
  EXPECT_EQ(s.write_errors, 0u);
  EXPECT_LE(m->Stats().peak_allocated_bytes, 2 * kPage);
}

TEST_F(WritableEntriesTest, CleanEntriesLeaveWithoutAWrite) {
  auto m = Make(1);
  Fill(*m, 0, 7);
  Expect(*m, 1, 0);  // writes 0 back
  Expect(*m, 0, 7);  // reads 0, evicts 1 (clean, never written): no write
  Expect(*m, 1, 0);  // evicts 0: clean since its read, no write
  EXPECT_EQ(spill_->stats().writes, 1u);
  EXPECT_EQ(spill_->stats().reads, 1u);
}

TEST_F(WritableEntriesTest, ChangesAfterAWriteBackAreNotLost) {
  auto m = Make(1);
  Fill(*m, 0, 1);
  Expect(*m, 1, 0);  // 0 written back with 1s
  Fill(*m, 0, 2);    // read back, changed again
  Expect(*m, 1, 0);  // written back again: the 2s
  Expect(*m, 0, 2);
  EXPECT_EQ(spill_->stats().writes, 2u);
}

TEST_F(WritableEntriesTest, DiscardedEntriesAreNeitherWrittenNorReadBack) {
  auto m = Make(2);
  Fill(*m, 0, 9);
  m->Discard(0);  // resident and dirty: dropped, no write
  EXPECT_EQ(m->state(0), EntryState::kAbsent);
  Fill(*m, 1, 5);
  Fill(*m, 2, 6);
  Fill(*m, 3, 7);  // writes back 1
  m->Discard(1);   // on disk: forgotten
  Expect(*m, 0, 0);
  Expect(*m, 1, 0);  // zeros again, no read of the stale copy
  EXPECT_EQ(spill_->stats().reads, 0u);
  const ClassStats s = m->Stats().per_class[static_cast<int>(EntryClass::kKv)];
  EXPECT_EQ(s.discards, 2u);
}

TEST_F(WritableEntriesTest, AFailedWriteBackLosesThatEntryOnlyUntilDiscarded) {
  auto m = Make(2);
  io::FaultSpec f;
  f.write_fail_begin = 1 * kPage;  // entry 1's page
  f.write_fail_end = 2 * kPage;
  fault_->SetFaults(f);
  Fill(*m, 0, 1);
  Fill(*m, 1, 2);
  Fill(*m, 2, 3);  // writes back 0
  Fill(*m, 3, 4);  // writes back 1: fails
  auto lost = m->Acquire(1);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), StatusCode::kIoError);
  EXPECT_NE(lost.status().message().find("layer 0 block 1"), std::string::npos) << lost.status().ToString();
  EXPECT_NE(lost.status().message().find("lost"), std::string::npos) << lost.status().ToString();
  EXPECT_NE(lost.status().message().find("injected write fault"), std::string::npos) << lost.status().ToString();
  EXPECT_FALSE(m->AcquireForWrite(1).ok());  // still lost
  Expect(*m, 0, 1);                          // the others are intact
  Expect(*m, 2, 3);
  Expect(*m, 3, 4);
  EXPECT_EQ(m->Stats().per_class[static_cast<int>(EntryClass::kKv)].write_errors, 1u);
  fault_->ClearFaults();
  m->Discard(1);
  Expect(*m, 1, 0);  // usable again, as never written
  Fill(*m, 1, 8);
  Expect(*m, 1, 8);
}

TEST_F(WritableEntriesTest, AFullDiskFailsTheWritesThatNeedNewSpace) {
  auto m = Make(1);
  io::FaultSpec f;
  f.disk_space_bytes = 2 * kPage;
  fault_->SetFaults(f);
  for (EntryId id = 0; id < 4; ++id) Fill(*m, id, static_cast<uint8_t>(10 + id));
  Expect(*m, 3, 13);  // resident
  // 0 and 1 got the two pages; 2's write-back found the disk full, and so does 3's.
  Expect(*m, 0, 10);
  Expect(*m, 1, 11);
  for (EntryId id : {2, 3}) {
    auto lost = m->Acquire(id);
    ASSERT_FALSE(lost.ok());
    EXPECT_NE(lost.status().message().find("No space left on device"), std::string::npos) << lost.status().ToString();
  }
  EXPECT_EQ(fault_->counters().disk_full_writes, 2u);
  // Rewriting a page already on disk needs no new space.
  Fill(*m, 0, 20);
  Expect(*m, 1, 11);  // writes 0 back into its old page
  Expect(*m, 0, 20);
}

TEST_F(WritableEntriesTest, ShortWritesAndFailedReadsAreErrorsNeverOtherBytes) {
  auto m = Make(1);
  io::FaultSpec f;
  f.short_write_one_in = 1;
  fault_->SetFaults(f);
  Fill(*m, 0, 1);
  Fill(*m, 1, 2);  // writes back 0: short
  fault_->ClearFaults();
  auto zero = m->Acquire(0);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("short write"), std::string::npos) << zero.status().ToString();
  Fill(*m, 2, 3);  // writes back 1
  f = {};
  f.fail_begin = 1 * kPage;  // reads of entry 1's page fail
  f.fail_end = 2 * kPage;
  fault_->SetFaults(f);
  auto one = m->Acquire(1);
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.status().message().find("layer 0 block 1"), std::string::npos) << one.status().ToString();
  fault_->ClearFaults();
  Expect(*m, 1, 2);  // a read error loses nothing: the next acquire reads it again
}

TEST_F(WritableEntriesTest, MruKeepsAStableSubsetOfACyclicSweep) {
  auto m = Make(3, std::make_unique<MruPolicy>());
  for (EntryId id = 0; id < 6; ++id) Fill(*m, id, static_cast<uint8_t>(id));
  const uint64_t reads_before = spill_->stats().reads;
  for (int sweep = 0; sweep < 4; ++sweep)
    for (EntryId id = 0; id < 6; ++id) Expect(*m, id, static_cast<uint8_t>(id));
  // Half of each sweep stays resident; LRU would miss every access (24 reads).
  const uint64_t reads = spill_->stats().reads - reads_before;
  EXPECT_LE(reads, 4u * 4u);
  EXPECT_GE(reads, 4u * 3u);
}

TEST_F(WritableEntriesTest, RegisterRefusesAWritableEntryOffAPageOrPastTheFile) {
  auto m = Make(2);
  EntrySpec s;
  s.name = "odd";
  s.file = spill_.get();
  s.writable = true;
  s.offset = 100;
  s.size = 10;
  EXPECT_EQ(m->Register(s).status().code(), StatusCode::kInvalidArgument);
  s.offset = kEntries * kPage - kPage;
  s.size = kPage + 1;
  EXPECT_EQ(m->Register(s).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m->AcquireForWrite(99).status().code(), StatusCode::kInvalidArgument);
}

// The real spill file: unlinked at once, O_DIRECT where the file system takes it, sync and
// async writes read back exactly.
TEST(PosixSpillFileTest, WritesReadBackAndLeaveNoFileBehind) {
  char tmpl[] = "/tmp/tierlm-spill-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  io::PosixStorageEnv env;
  {
    auto f = env.CreateSpillFile(dir, 64 * kPage);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ((*f)->size(), 64 * kPage);
    // Nothing with a name is left in the directory.
    DIR* d = ::opendir(dir.c_str());
    ASSERT_NE(d, nullptr);
    int names = 0;
    while (dirent* de = ::readdir(d))
      if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0) ++names;
    ::closedir(d);
    EXPECT_EQ(names, 0);

    auto* out = static_cast<uint8_t*>(std::aligned_alloc(kPage, 8 * kPage));
    auto* in = static_cast<uint8_t*>(std::aligned_alloc(kPage, 8 * kPage));
    for (uint64_t i = 0; i < 8 * kPage; ++i) out[i] = static_cast<uint8_t>(i * 7 + 3);
    ASSERT_TRUE((*f)->WriteAt(4 * kPage, 8 * kPage, out).ok());
    ASSERT_TRUE((*f)->ReadAt(4 * kPage, 8 * kPage, in).ok());
    EXPECT_EQ(0, std::memcmp(in, out, 8 * kPage));

    for (uint64_t i = 0; i < 8 * kPage; ++i) out[i] = static_cast<uint8_t>(i * 13 + 1);
    io::WriteRequest w;
    w.offset = 40 * kPage;
    w.len = 8 * kPage;
    w.src = out;
    const io::ReadId wid = (*f)->SubmitWrite(w);
    std::vector<io::ReadResult> done;
    ASSERT_TRUE((*f)->Wait({&wid, 1}, -1, &done).ok());
    ASSERT_EQ(done.size(), 1u);
    ASSERT_TRUE(done[0].status.ok()) << done[0].status.ToString();
    EXPECT_EQ(done[0].bytes, 8 * kPage);
    io::ReadRequest r;
    r.offset = 40 * kPage;
    r.len = 8 * kPage;
    r.dst = in;
    const io::ReadId rid = (*f)->Submit(r);
    done.clear();
    ASSERT_TRUE((*f)->Wait({&rid, 1}, -1, &done).ok());
    ASSERT_TRUE(done[0].status.ok()) << done[0].status.ToString();
    EXPECT_EQ(0, std::memcmp(in, out, 8 * kPage));

    EXPECT_EQ((*f)->WriteAt(63 * kPage, 2 * kPage, out).code(), StatusCode::kOutOfRange);
    const io::FileStats st = (*f)->stats();
    EXPECT_EQ(st.writes, 2u);
    EXPECT_EQ(st.bytes_written, 16 * kPage);
    std::free(out);
    std::free(in);
  }
  // A file larger than the disk is refused at creation, not midway through a generation.
  auto huge = env.CreateSpillFile(dir, 1ull << 52);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kIoError);
  EXPECT_NE(huge.status().message().find("cannot"), std::string::npos) << huge.status().ToString();
  EXPECT_EQ(::rmdir(dir.c_str()), 0);  // empty: nothing was left behind
  auto missing = env.CreateSpillFile(dir + "/no/such/dir", kPage);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no/such/dir"), std::string::npos);
}

}  // namespace
}  // namespace tierlm
