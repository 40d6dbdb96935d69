// The paged KV cache's bookkeeping: exact allocation, free, fork and copy-on-write orders
// on tiny pools, admission answers, and block hashes that depend on nothing but the tokens
// and the identity.
#include "kv/kv_block_manager.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <numeric>
#include <vector>

namespace tierlm::kv {
namespace {

std::vector<BlockId> Table(const KvBlockManager& m, SeqId s) {
  auto t = m.BlockTable(s);
  return {t.begin(), t.end()};
}

std::vector<int32_t> Iota(int32_t from, int32_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

TEST(KvBlockManagerTest, AllocatesInOrderAndFreesOntoAStack) {
  KvBlockManager m(4, 6, 99);
  std::vector<BlockCopy> copies;
  ASSERT_EQ(m.Reserve(1, 5, &copies), Admit::kOk);  // 2 blocks
  EXPECT_EQ(Table(m, 1), (std::vector<BlockId>{0, 1}));
  ASSERT_EQ(m.Reserve(2, 4, &copies), Admit::kOk);
  EXPECT_EQ(Table(m, 2), (std::vector<BlockId>{2}));
  EXPECT_EQ(m.n_free(), 3);
  ASSERT_TRUE(m.Append(1, Iota(10, 5)).ok());
  EXPECT_EQ(m.Length(1), 5);
  EXPECT_EQ(m.Slot(1, 4).block, 1);
  EXPECT_EQ(m.Slot(1, 4).offset, 0);
  // Freed blocks are reused most recent first; a freed sequence hands its first block out first.
  m.Free(1);
  EXPECT_EQ(m.n_free(), 5);
  ASSERT_EQ(m.Reserve(3, 12, &copies), Admit::kOk);
  EXPECT_EQ(Table(m, 3), (std::vector<BlockId>{0, 1, 3}));
  EXPECT_TRUE(copies.empty());
  EXPECT_FALSE(m.HasSequence(1));
  EXPECT_EQ(m.Length(1), 0);
}

TEST(KvBlockManagerTest, AdmissionIsOkLaterOrImpossible) {
  KvBlockManager m(4, 3, 0);
  std::vector<BlockCopy> copies;
  EXPECT_EQ(m.Reserve(1, 13, &copies), Admit::kImpossible);  // 4 blocks > 3 in all
  EXPECT_FALSE(m.HasSequence(1));
  ASSERT_EQ(m.Reserve(1, 8, &copies), Admit::kOk);
  EXPECT_EQ(m.Reserve(2, 8, &copies), Admit::kLater);  // 2 needed, 1 free
  EXPECT_FALSE(m.HasSequence(2));                     // nothing changed
  EXPECT_EQ(m.n_free(), 1);
  EXPECT_EQ(m.BlocksNeeded(2, 8), 2);
  m.Free(1);
  EXPECT_EQ(m.Reserve(2, 8, &copies), Admit::kOk);
  // Capacity already reserved needs nothing more.
  EXPECT_EQ(m.BlocksNeeded(2, 8), 0);
  EXPECT_EQ(m.Reserve(2, 8, &copies), Admit::kOk);
  EXPECT_EQ(m.Capacity(2), 8);
  EXPECT_EQ(m.Reserve(2, -1, &copies), Admit::kImpossible);
}

TEST(KvBlockManagerTest, AppendPastReservationIsAnError) {
  KvBlockManager m(4, 3, 0);
  std::vector<BlockCopy> copies;
  EXPECT_FALSE(m.Append(7, Iota(0, 1)).ok());  // unknown sequence
  ASSERT_EQ(m.Reserve(7, 3, &copies), Admit::kOk);
  ASSERT_TRUE(m.Append(7, Iota(0, 3)).ok());
  ASSERT_TRUE(m.Append(7, Iota(3, 1)).ok());  // the block holds 4
  const Status st = m.Append(7, Iota(4, 1));
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_NE(st.message().find("sequence 7"), std::string::npos) << st.ToString();
  EXPECT_EQ(m.Length(7), 4);
}

TEST(KvBlockManagerTest, ForkSharesAndCopiesOnWrite) {
  KvBlockManager m(4, 8, 5);
  std::vector<BlockCopy> copies;
  ASSERT_EQ(m.Reserve(1, 6, &copies), Admit::kOk);
  ASSERT_TRUE(m.Append(1, Iota(100, 6)).ok());  // block 0 full, block 1 holds 2
  ASSERT_TRUE(m.Fork(1, 2).ok());
  EXPECT_EQ(Table(m, 2), (std::vector<BlockId>{0, 1}));
  EXPECT_EQ(m.RefCount(0), 2);
  EXPECT_EQ(m.RefCount(1), 2);
  EXPECT_EQ(m.n_free(), 6);
  EXPECT_FALSE(m.Fork(1, 2).ok());  // the child exists
  EXPECT_FALSE(m.Fork(9, 3).ok());  // no parent

  // The child appends into the shared partial block: it gets a copy of its two positions.
  EXPECT_EQ(m.BlocksNeeded(2, 1), 1);
  ASSERT_EQ(m.Reserve(2, 1, &copies), Admit::kOk);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].from, 1);
  EXPECT_EQ(copies[0].to, 2);
  EXPECT_EQ(copies[0].n_used, 2);
  EXPECT_EQ(Table(m, 2), (std::vector<BlockId>{0, 2}));
  EXPECT_EQ(m.RefCount(1), 1);
  EXPECT_EQ(m.RefCount(2), 1);
  ASSERT_TRUE(m.Append(2, Iota(7, 1)).ok());
  EXPECT_EQ(m.BlockTokens(2)[0], 104);
  EXPECT_EQ(m.BlockTokens(2)[2], 7);
  EXPECT_EQ(m.BlockTokens(1)[2], -1);  // the parent's block is untouched

  // Now the parent is the sole owner of block 1 and appends without a copy.
  copies.clear();
  ASSERT_EQ(m.Reserve(1, 2, &copies), Admit::kOk);
  EXPECT_TRUE(copies.empty());
  ASSERT_TRUE(m.Append(1, Iota(200, 2)).ok());
  EXPECT_NE(m.BlockHash(1), 0u);
  EXPECT_EQ(m.BlockHash(2), 0u);  // not full

  // A full shared block is never copied: appending starts a new block.
  ASSERT_TRUE(m.Fork(1, 3).ok());
  ASSERT_EQ(m.Reserve(3, 1, &copies), Admit::kOk);
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(Table(m, 3), (std::vector<BlockId>{0, 1, 3}));

  m.Free(1);
  EXPECT_EQ(m.RefCount(0), 2);  // sequences 2 and 3
  EXPECT_EQ(m.RefCount(1), 1);  // sequence 3
  m.Free(3);
  m.Free(2);
  EXPECT_EQ(m.n_free(), 8);
  for (BlockId b = 0; b < 8; ++b) {
    EXPECT_EQ(m.RefCount(b), 0);
    EXPECT_EQ(m.BlockHash(b), 0u);
  }
}

TEST(KvBlockManagerTest, ReserveThatCannotCopyChangesNothing) {
  KvBlockManager m(4, 2, 0);
  std::vector<BlockCopy> copies;
  ASSERT_EQ(m.Reserve(1, 2, &copies), Admit::kOk);
  ASSERT_TRUE(m.Append(1, Iota(0, 2)).ok());
  ASSERT_TRUE(m.Fork(1, 2).ok());
  ASSERT_EQ(m.Reserve(3, 4, &copies), Admit::kOk);  // the last free block
  EXPECT_EQ(m.Reserve(2, 1, &copies), Admit::kLater);  // the copy needs a block
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(Table(m, 2), (std::vector<BlockId>{0}));
  EXPECT_EQ(m.RefCount(0), 2);
}

TEST(KvBlockManagerTest, TruncateReleasesAndUnhashes) {
  KvBlockManager m(4, 4, 1);
  std::vector<BlockCopy> copies;
  ASSERT_EQ(m.Reserve(1, 10, &copies), Admit::kOk);
  ASSERT_TRUE(m.Append(1, Iota(0, 10)).ok());
  EXPECT_NE(m.BlockHash(1), 0u);
  ASSERT_TRUE(m.Truncate(1, 6).ok());
  EXPECT_EQ(Table(m, 1), (std::vector<BlockId>{0, 1}));
  EXPECT_EQ(m.BlockHash(1), 0u);
  EXPECT_EQ(m.BlockTokens(1)[2], -1);
  EXPECT_EQ(m.n_free(), 2);
  EXPECT_FALSE(m.Truncate(1, 7).ok());
  EXPECT_FALSE(m.Truncate(5, 0).ok());
  // Re-appending the same tokens gives the same hash back.
  const uint64_t h1_before = KvBlockManager::ChainHash(m.BlockHash(0), 1, Iota(4, 4));
  ASSERT_EQ(m.Reserve(1, 2, &copies), Admit::kOk);
  ASSERT_TRUE(m.Append(1, Iota(6, 2)).ok());
  EXPECT_EQ(m.BlockHash(1), h1_before);
  // Truncating into a shared block keeps it (and its hash) for the other owner.
  ASSERT_TRUE(m.Fork(1, 2).ok());
  ASSERT_TRUE(m.Truncate(2, 5).ok());
  EXPECT_EQ(m.BlockHash(1), h1_before);
  ASSERT_EQ(m.Reserve(2, 1, &copies), Admit::kOk);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies.back().n_used, 1);
}

// The hash is XXH3-64 of a documented little-endian byte string: nothing else goes in, so
// another process (or another machine) computes the same value.
TEST(KvBlockManagerTest, HashesAreChainedAndDependOnlyOnTokensAndIdentity) {
  auto expect = [](uint64_t prev, uint64_t id, const std::vector<int32_t>& toks) {
    std::vector<uint8_t> b;
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(prev >> (8 * i)));
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(id >> (8 * i)));
    const uint32_t n = static_cast<uint32_t>(toks.size());
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(n >> (8 * i)));
    for (int32_t t : toks)
      for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(static_cast<uint32_t>(t) >> (8 * i)));
    return XXH3_64bits(b.data(), b.size());
  };
  KvBlockManager a(4, 4, 0xABCDEF), b(4, 8, 0xABCDEF), c(4, 4, 0x123456);
  std::vector<BlockCopy> copies;
  for (KvBlockManager* m : {&a, &b, &c}) {
    ASSERT_EQ(m->Reserve(1, 8, &copies), Admit::kOk);
    ASSERT_TRUE(m->Append(1, Iota(300, 8)).ok());
  }
  const uint64_t h0 = expect(0, 0xABCDEF, Iota(300, 4));
  EXPECT_EQ(a.BlockHash(a.BlockTable(1)[0]), h0);
  EXPECT_EQ(a.BlockHash(a.BlockTable(1)[1]), expect(h0, 0xABCDEF, Iota(304, 4)));
  // Same tokens, same identity, another pool: same hashes. Another identity: different.
  EXPECT_EQ(b.BlockHash(b.BlockTable(1)[1]), a.BlockHash(a.BlockTable(1)[1]));
  EXPECT_NE(c.BlockHash(c.BlockTable(1)[0]), h0);
  // The chain: the same block contents after another prefix hash differently.
  ASSERT_EQ(a.Reserve(2, 4, &copies), Admit::kOk);
  ASSERT_TRUE(a.Append(2, Iota(304, 4)).ok());
  EXPECT_NE(a.BlockHash(a.BlockTable(2)[0]), a.BlockHash(a.BlockTable(1)[1]));
  EXPECT_EQ(a.BlockHash(a.BlockTable(2)[0]), expect(0, 0xABCDEF, Iota(304, 4)));
}

}  // namespace
}  // namespace tierlm::kv
