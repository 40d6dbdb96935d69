// The prefix cache: the memory tier inside the block manager (blocks of finished sequences
// reused by hash, evicted last-released-first), the PrefixCache over tiers (a hit gives
// bit-identical logits to a cold run), and the identities that keep models, formats and
// tenants apart.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "kv/paged_kv_cache.h"
#include "model/batch.h"
#include "model/llama_model.h"
#include "model/model_identity.h"
#include "prefix/block_record.h"
#include "prefix/prefix_cache.h"
#include "test_paths.h"
#include "test_printers.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

using kv::BlockId;
using kv::KvBlockManager;

std::vector<int32_t> Tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = first + i;
  return t;
}

TEST(PrefixMemoryTierTest, FinishedSequencesLeaveComputedFullBlocksReusableByHash) {
  KvBlockManager m(4, 8, 7);
  std::vector<kv::BlockCopy> copies;
  const auto toks = Tokens(10, 100);  // two full blocks and a partial one
  ASSERT_EQ(m.Reserve(1, 10, &copies), Admit::kOk);
  ASSERT_TRUE(m.Append(1, toks).ok());
  // Not computed yet: nothing is reusable.
  const auto hashes = m.ChainHashes(toks, 0);
  ASSERT_EQ(hashes.size(), 2u);
  EXPECT_EQ(m.FindCached(hashes[0]), -1);
  m.MarkComputed(1, 10);
  EXPECT_EQ(m.FindCached(hashes[0]), m.BlockTable(1)[0]);
  EXPECT_EQ(m.FindCached(hashes[1]), m.BlockTable(1)[1]);
  const BlockId b0 = m.BlockTable(1)[0], b1 = m.BlockTable(1)[1];
  m.Free(1);
  // The partial block is free; the two full ones are cached, and count as free.
  EXPECT_EQ(m.n_cached(), 2);
  EXPECT_EQ(m.n_free(), 8);
  const auto released = m.TakeReleased();
  EXPECT_EQ(released.size(), 1u) << "only the partial block's bytes are dropped";
  // A new sequence with the same first 9 tokens takes both blocks by reference.
  EXPECT_EQ(m.AttachCached(2, hashes, 0), 2);
  EXPECT_EQ(m.Length(2), 8);
  EXPECT_EQ(m.BlockTable(2)[0], b0);
  EXPECT_EQ(m.BlockTable(2)[1], b1);
  EXPECT_EQ(m.RefCount(b0), 1);
  EXPECT_EQ(m.n_cached(), 0);
  // Another sequence shares them too (ref counts), and a different root matches nothing.
  EXPECT_EQ(m.AttachCached(3, hashes, 0), 2);
  EXPECT_EQ(m.RefCount(b0), 2);
  EXPECT_EQ(m.AttachCached(4, m.ChainHashes(toks, 99), 99), 0);
  EXPECT_NE(m.ChainHashes(toks, 99)[0], hashes[0]);
  // An attached sequence continues past the shared blocks into its own.
  ASSERT_EQ(m.Reserve(2, 2, &copies), Admit::kOk);
  EXPECT_TRUE(copies.empty());
  ASSERT_TRUE(m.Append(2, std::vector<int32_t>{108, 109}).ok());
  EXPECT_NE(m.BlockTable(2)[2], m.BlockTable(3).size() > 2 ? m.BlockTable(3)[2] : -1);
}

TEST(PrefixMemoryTierTest, CachedBlocksAreEvictedLeastRecentlyReleasedFirstWhenFreeBlocksRunOut) {
  KvBlockManager m(2, 4, 7);
  std::vector<kv::BlockCopy> copies;
  auto fill = [&](kv::SeqId s, int32_t first) {
    ASSERT_EQ(m.Reserve(s, 2, &copies), Admit::kOk);
    ASSERT_TRUE(m.Append(s, Tokens(2, first)).ok());
    m.MarkComputed(s, 2);
  };
  fill(1, 10);
  fill(2, 20);
  fill(3, 30);
  const auto h1 = m.ChainHashes(Tokens(2, 10), 0), h2 = m.ChainHashes(Tokens(2, 20), 0);
  m.Free(2);  // released first
  m.Free(1);
  m.Free(3);
  EXPECT_EQ(m.n_cached(), 3);
  (void)m.TakeReleased();
  // Four blocks wanted: one free, then the cached ones in release order (2's first).
  ASSERT_EQ(m.Reserve(4, 4, &copies), Admit::kOk);  // two blocks: the free one and 2's
  EXPECT_EQ(m.FindCached(h2[0]), -1) << "the block released first is evicted first";
  EXPECT_NE(m.FindCached(h1[0]), -1);
  const auto dropped = m.TakeReleased();
  ASSERT_EQ(dropped.size(), 1u) << "an evicted block's bytes are discarded";
  EXPECT_EQ(m.BlockHash(dropped[0]), 0u);
  // DropCached forgets the rest.
  m.DropCached();
  EXPECT_EQ(m.n_cached(), 0);
  EXPECT_EQ(m.FindCached(h1[0]), -1);
  EXPECT_EQ(m.n_free(), 2);
}

TEST(PrefixMemoryTierTest, TruncatingIntoACachedBlockUnregistersIt) {
  KvBlockManager m(4, 4, 7);
  std::vector<kv::BlockCopy> copies;
  const auto toks = Tokens(8, 1);
  ASSERT_EQ(m.Reserve(1, 8, &copies), Admit::kOk);
  ASSERT_TRUE(m.Append(1, toks).ok());
  m.MarkComputed(1, 8);
  const auto h = m.ChainHashes(toks, 0);
  ASSERT_NE(m.FindCached(h[1]), -1);
  ASSERT_TRUE(m.Truncate(1, 6).ok());
  EXPECT_EQ(m.FindCached(h[1]), -1) << "a block no longer full is not reusable";
  EXPECT_NE(m.FindCached(h[0]), -1);
  // Rewritten with other tokens, it hashes (and is cached) under its new contents.
  ASSERT_TRUE(m.Append(1, std::vector<int32_t>{50, 51}).ok());
  m.MarkComputed(1, 8);
  auto other = toks;
  other[6] = 50;
  other[7] = 51;
  EXPECT_EQ(m.FindCached(m.ChainHashes(other, 0)[1]), m.BlockTable(1)[1]);
}

// A tier in a std::map: what the disk and Redis tiers do, without their files or server.
class MapTier : public prefix::BlockTier {
 public:
  std::string name() const override { return "map"; }
  size_t Contains(uint64_t identity, std::span<const uint64_t> hashes) override {
    size_t n = 0;
    while (n < hashes.size() && map_.count({identity, hashes[n]})) ++n;
    return n;
  }
  size_t Load(uint64_t identity, std::span<const uint64_t> hashes, uint64_t payload_bytes, const Sink& sink) override {
    size_t n = 0;
    for (; n < hashes.size(); ++n) {
      ++c_.lookups;
      auto it = map_.find({identity, hashes[n]});
      if (it == map_.end()) break;
      auto payload = prefix::CheckRecord(it->second, identity, hashes[n], payload_bytes);
      if (!payload.ok()) {
        ++c_.corrupt;
        break;
      }
      if (!sink(n, *payload)) break;
      ++c_.hits;
    }
    return n;
  }
  void Store(uint64_t identity, uint64_t hash, std::vector<uint8_t> payload) override {
    ++c_.stored;
    map_[{identity, hash}] = prefix::EncodeRecord(identity, hash, payload);
  }
  void Flush() override {}
  prefix::TierCounters Counters() const override { return c_; }

  std::map<std::pair<uint64_t, uint64_t>, std::vector<uint8_t>> map_;
  prefix::TierCounters c_;
};

struct Loaded {
  gguf::GgufFile file;
  std::unique_ptr<WeightStore> store;
  std::unique_ptr<LlamaModel> model;
  uint64_t identity = 0;
};

std::unique_ptr<Loaded> Load(const std::filesystem::path& path) {
  auto l = std::make_unique<Loaded>();
  auto f = gguf::GgufFile::Open(path.string());
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  l->file = std::move(*f);
  auto s = InMemoryWeightStore::Open(l->file);
  EXPECT_TRUE(s.ok());
  l->store = std::move(*s);
  auto m = LlamaModel::Create(l->file, l->store.get());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  l->model = std::move(*m);
  auto id = ModelContentIdentity(l->file, path.string());
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  l->identity = *id;
  return l;
}

std::unique_ptr<kv::PagedKvCache> MakeCache(const Loaded& l, kv::KvFormat f, int32_t n_blocks) {
  const ModelHParams& hp = l.model->hparams();
  kv::PagedKvOptions o;
  o.n_layer = hp.n_layer;
  o.n_head_kv = hp.n_head_kv;
  o.head_dim = hp.head_dim;
  o.format = f;
  o.n_blocks = n_blocks;
  o.identity = l.identity;
  auto c = kv::PagedKvCache::Create(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::move(*c);
}

// Prefills `prompt` of `seq` from its computed watermark in chunks of 7, then decodes
// n_decode greedy tokens; returns every logit row it saw after the prompt.
std::vector<float> Continue(LlamaModel& m, kv::PagedKvCache& cache, kv::SeqId seq, const std::vector<int32_t>& prompt,
                            int n_decode, ThreadPool* pool) {
  std::vector<float> out, logits;
  int64_t pos = cache.Computed(seq);
  if (!cache.blocks().HasSequence(seq)) EXPECT_TRUE(cache.blocks().Open(seq, 0).ok());
  EXPECT_EQ(cache.blocks().Length(seq), pos);
  const int64_t n = static_cast<int64_t>(prompt.size());
  while (pos < n) {
    const int64_t len = std::min<int64_t>(7, n - pos);
    std::span<const int32_t> chunk(prompt.data() + pos, static_cast<size_t>(len));
    EXPECT_TRUE(cache.AddTokens(seq, chunk).ok());
    Batch b;
    for (int64_t i = 0; i < len; ++i) b.Add(chunk[static_cast<size_t>(i)], pos + i, seq, pos + i + 1 == n);
    EXPECT_TRUE(m.Forward(b, cache, &logits, pool).ok());
    pos += len;
  }
  out.insert(out.end(), logits.begin(), logits.end());
  for (int d = 0; d < n_decode; ++d) {
    const int32_t t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_TRUE(cache.AddTokens(seq, std::span<const int32_t>(&t, 1)).ok());
    Batch b;
    b.Add(t, pos++, seq, true);
    EXPECT_TRUE(m.Forward(b, cache, &logits, pool).ok());
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

std::vector<int32_t> Prompt(int n, uint32_t seed, int32_t n_vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(static_cast<size_t>(n));
  p[0] = 1;
  for (int i = 1; i < n; ++i) p[static_cast<size_t>(i)] = 2 + static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab - 2));
  return p;
}

TEST(PrefixCacheModelTest, HitsFromMemoryAndFromALowerTierGiveBitIdenticalLogits) {
  auto l = Load(testing::StoriesModel());
  LlamaModel& m = *l->model;
  ThreadPool pool(2);
  const kv::KvFormat f{GgmlType::kF16, GgmlType::kF16, 16};
  const auto prompt = Prompt(100, 5, static_cast<int32_t>(m.hparams().n_vocab));

  // Cold, alone, no prefix cache.
  auto cold_cache = MakeCache(*l, f, 32);
  const std::vector<float> cold = Continue(m, *cold_cache, 1, prompt, 6, &pool);

  // A cache with a lower tier: the first sequence computes and publishes.
  auto* tier = new MapTier;
  prefix::PrefixCache pc(std::unique_ptr<prefix::BlockTier>(tier), nullptr);
  auto cache = MakeCache(*l, f, 32);
  auto hit = pc.Attach(*cache, 1, prompt, 0);
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(hit->tokens(), 0);
  EXPECT_EQ(Continue(m, *cache, 1, prompt, 6, &pool), cold);
  pc.Publish(*cache, 1);
  // 106 positions computed: 6 full blocks (the last decoded token's KV is not computed).
  EXPECT_EQ(tier->map_.size(), 6u);
  cache->Free(1);
  pc.Forget(1);

  // The same prompt again: its 6 full blocks of the prompt (96 positions) come from memory.
  hit = pc.Attach(*cache, 2, prompt, 0);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->memory_tokens, 96);
  EXPECT_EQ(hit->disk_tokens, 0);
  EXPECT_EQ(cache->Computed(2), 96);
  EXPECT_EQ(Continue(m, *cache, 2, prompt, 6, &pool), cold) << "a memory hit changes no bit";
  cache->Free(2);
  pc.Forget(2);

  // A new cache (a restart): they come from the lower tier.
  auto fresh = MakeCache(*l, f, 32);
  hit = pc.Attach(*fresh, 3, prompt, 0);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->memory_tokens, 0);
  EXPECT_EQ(hit->disk_tokens, 96);
  EXPECT_EQ(Continue(m, *fresh, 3, prompt, 6, &pool), cold) << "a loaded hit changes no bit";
  const auto stats = pc.Stats();
  EXPECT_EQ(stats.memory_tokens, 96u);
  EXPECT_EQ(stats.disk_tokens, 96u);

  // A prompt sharing only the first 40 tokens reuses two blocks, and its output is its own
  // cold output.
  auto other = prompt;
  for (size_t i = 40; i < other.size(); ++i) other[i] = 2 + (other[i] + 7) % 500;
  auto cold2_cache = MakeCache(*l, f, 32);
  const auto cold2 = Continue(m, *cold2_cache, 1, other, 3, &pool);
  hit = pc.Attach(*fresh, 4, other, 0);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->tokens(), 32);
  EXPECT_EQ(Continue(m, *fresh, 4, other, 3, &pool), cold2);

  // A salted request matches nothing of the unsalted ones.
  hit = pc.Attach(*fresh, 5, prompt, prefix::PrefixCache::RootFor("tenant-a"));
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->tokens(), 0);
}

TEST(PrefixCacheModelTest, ACorruptLowerTierBlockIsAMissAndTheRestIsRecomputedExactly) {
  auto l = Load(testing::StoriesModel());
  LlamaModel& m = *l->model;
  ThreadPool pool(2);
  const kv::KvFormat f{GgmlType::kF16, GgmlType::kF16, 16};
  const auto prompt = Prompt(80, 9, static_cast<int32_t>(m.hparams().n_vocab));
  auto cold_cache = MakeCache(*l, f, 16);
  const auto cold = Continue(m, *cold_cache, 1, prompt, 4, &pool);
  cold_cache->Free(1);

  auto* tier = new MapTier;
  prefix::PrefixCache pc(std::unique_ptr<prefix::BlockTier>(tier), nullptr, /*memory=*/false);
  auto cache = MakeCache(*l, f, 16);
  ASSERT_TRUE(pc.Attach(*cache, 1, prompt, 0).ok());
  Continue(m, *cache, 1, prompt, 0, &pool);
  pc.Publish(*cache, 1);
  ASSERT_EQ(tier->map_.size(), 5u);
  // Flip a payload byte of the third block of the chain.
  const auto hashes = cache->blocks().ChainHashes(prompt, 0);
  tier->map_[{cache->blocks().identity(), hashes[2]}][prefix::kRecordHeaderBytes + 10] ^= 0x40;
  cache->Free(1);
  auto hit = pc.Attach(*cache, 2, prompt, 0);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->memory_tokens, 0) << "memory reuse is off";
  EXPECT_EQ(hit->disk_tokens, 32) << "two blocks before the corrupt one";
  EXPECT_EQ(tier->c_.corrupt, 1u);
  EXPECT_EQ(Continue(m, *cache, 2, prompt, 4, &pool), cold);
}

TEST(PrefixCacheModelTest, OtherModelsAndKvFormatsNeverShareBlocks) {
  // Two synthetic models of one shape and vocabulary, only their weights differ.
  const auto a = testing::SynthModel("tiny", "q8_0", 42);
  const auto b = testing::SynthModel("tiny", "q8_0", 43);
  auto fa = gguf::GgufFile::Open(a.string());
  auto fb = gguf::GgufFile::Open(b.string());
  ASSERT_TRUE(fa.ok() && fb.ok());
  auto ia = ModelContentIdentity(*fa, a.string());
  auto ib = ModelContentIdentity(*fb, b.string());
  ASSERT_TRUE(ia.ok() && ib.ok());
  EXPECT_NE(*ia, *ib);
  // Stable: the same content is the same identity, wherever the file is.
  const auto copy = testing::ScratchDir("identity") / "copy.gguf";
  std::filesystem::copy_file(a, copy);
  auto fc = gguf::GgufFile::Open(copy.string());
  ASSERT_TRUE(fc.ok());
  EXPECT_EQ(*ModelContentIdentity(*fc, copy.string()), *ia);
  std::filesystem::remove_all(copy.parent_path());
  // KV identities differ by key type, value type and block size.
  const uint64_t base = kv::KvIdentity(*ia, {GgmlType::kF16, GgmlType::kF16, 16});
  EXPECT_NE(base, kv::KvIdentity(*ib, {GgmlType::kF16, GgmlType::kF16, 16}));
  EXPECT_NE(base, kv::KvIdentity(*ia, {GgmlType::kQ8_0, GgmlType::kF16, 16}));
  EXPECT_NE(base, kv::KvIdentity(*ia, {GgmlType::kF16, GgmlType::kQ8_0, 16}));
  EXPECT_NE(base, kv::KvIdentity(*ia, {GgmlType::kF16, GgmlType::kF16, 32}));
  // So a tier filled by one model answers nothing to the other.
  auto la = Load(a), lb = Load(b);
  ThreadPool pool(2);
  auto* tier = new MapTier;
  prefix::PrefixCache pc(std::unique_ptr<prefix::BlockTier>(tier), nullptr);
  const auto prompt = Prompt(40, 3, static_cast<int32_t>(la->model->hparams().n_vocab));
  auto ca = MakeCache(*la, {GgmlType::kF16, GgmlType::kF16, 16}, 8);
  ASSERT_TRUE(pc.Attach(*ca, 1, prompt, 0).ok());
  Continue(*la->model, *ca, 1, prompt, 0, &pool);
  pc.Publish(*ca, 1);
  ASSERT_EQ(tier->map_.size(), 2u);
  auto cb = MakeCache(*lb, {GgmlType::kF16, GgmlType::kF16, 16}, 8);
  auto hit = pc.Attach(*cb, 1, prompt, 0);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->tokens(), 0);
  auto cq = MakeCache(*la, {GgmlType::kQ8_0, GgmlType::kF16, 16}, 8);
  hit = pc.Attach(*cq, 1, prompt, 0);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->tokens(), 0);
}

TEST(PrefixCacheModelTest, ALowerTierSlowerThanRecomputingIsDeclined) {
  auto l = Load(testing::StoriesModel());
  ThreadPool pool(2);
  const kv::KvFormat f{GgmlType::kF16, GgmlType::kF16, 16};
  const auto prompt = Prompt(50, 2, static_cast<int32_t>(l->model->hparams().n_vocab));
  auto* tier = new MapTier;
  prefix::PrefixCache pc(std::unique_ptr<prefix::BlockTier>(tier), nullptr, false);
  auto cache = MakeCache(*l, f, 8);
  ASSERT_TRUE(pc.Attach(*cache, 1, prompt, 0).ok());
  Continue(*l->model, *cache, 1, prompt, 0, &pool);
  pc.Publish(*cache, 1);
  cache->Free(1);
  // Recomputing at a billion tokens a second beats any read: declined, nothing loaded.
  auto hit = pc.Attach(*cache, 2, prompt, 0, 1e9);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->tokens(), 0);
  EXPECT_EQ(pc.Stats().declined_blocks, 3u);
  cache->Free(2);
  // At ten tokens a second, loading wins.
  hit = pc.Attach(*cache, 3, prompt, 0, 10);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->disk_tokens, 48);
}

}  // namespace
}  // namespace tierlm
