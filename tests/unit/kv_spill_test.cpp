// A KV cache larger than its memory share: blocks spill to a private file on disk and are
// read back ahead of use. Greedy tokens equal an all-in-memory run under any share, down to
// the minimum, and through --mem-budget; I/O faults on the spill file (a failed write, a
// full disk, a failed read, a short read) end only the sequence whose blocks they hit, with
// an error naming the sequence, layer and block, while the others go on bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "io/fault_injection_env.h"
#include "io/mem_storage_env.h"
#include "kernels/matmul.h"
#include "kv/paged_kv_cache.h"
#include "model/batch.h"
#include "model/llama_model.h"
#include "runtime/engine.h"
#include "runtime/memory_plan.h"
#include "test_paths.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

const kv::KvFormat kF32Kv{GgmlType::kF32, GgmlType::kF32, 16};

int32_t Argmax(const float* x, int64_t n) { return static_cast<int32_t>(std::max_element(x, x + n) - x); }

// Greedy continuation of `prompt` through the engine's own KV cache.
std::vector<int32_t> Greedy(Engine& e, const std::vector<int32_t>& prompt, int n) {
  std::vector<float> logits;
  std::vector<int32_t> out;
  Status st = e.model().Forward(prompt, e.kv(), false, &logits, &e.pool());
  EXPECT_TRUE(st.ok()) << st.ToString();
  const int64_t V = e.model().hparams().n_vocab;
  for (int i = 0; i < n && st.ok(); ++i) {
    const int32_t t = Argmax(logits.data(), V);
    out.push_back(t);
    const int32_t one[1] = {t};
    st = e.model().Forward(one, e.kv(), false, &logits, &e.pool());
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  return out;
}

std::vector<int32_t> LongPrompt(const Engine& e) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "Once upon a time there was a little girl named Lily who loved the sun. ";
  return e.tokenizer().Encode(text, true, false);
}

// stories260K with -c 1024, f32 KV, the given --kv-mem and --mem-budget (0: none).
EngineOptions StoriesOptions(uint64_t kv_mem, uint64_t budget) {
  EngineOptions o;
  o.model_path = testing::StoriesModel().string();
  o.n_ctx = 1024;
  o.n_threads = 2;
  o.kv_format = kF32Kv;
  o.kv_mem_bytes = kv_mem;
  o.mem_budget_bytes = budget;
  o.kv_spill_dir = testing::DataDir().string();
  return o;
}

std::unique_ptr<Engine> LoadStories(uint64_t kv_mem, uint64_t budget) {
  auto e = Engine::Load(StoriesOptions(kv_mem, budget));
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

TEST(KvSpillTest, AnyMemoryShareGivesTheTokensOfTheAllInMemoryRun) {
  auto ref = LoadStories(0, 0);
  ASSERT_TRUE(ref);
  ASSERT_FALSE(ref->memory_plan().kv_tiered);
  const std::vector<int32_t> prompt = LongPrompt(*ref);
  ASSERT_GT(prompt.size(), 600u);
  const std::vector<int32_t> want = Greedy(*ref, prompt, 200);
  const uint64_t least = ref->memory_plan().kv_min_tiered_bytes;
  ASSERT_GT(least, 0u);
  for (uint64_t share : {least, least + least / 2, 2 * least}) {
    SCOPED_TRACE("--kv-mem " + std::to_string(share));
    auto e = LoadStories(share, 0);
    ASSERT_TRUE(e);
    ASSERT_TRUE(e->memory_plan().kv_tiered);
    EXPECT_EQ(Greedy(*e, prompt, 200), want);
    const kv::KvTierStats s = e->kv().paged().store().TierStats();
    EXPECT_TRUE(s.tiered);
    EXPECT_GT(s.spilled_bytes, 0u);  // it did spill
    EXPECT_GT(s.read_bytes, 0u);     // and read back
    EXPECT_LE(s.residency.peak_allocated_bytes, share);
    EXPECT_EQ(s.residency.per_class[static_cast<int>(EntryClass::kKv)].write_errors, 0u);
  }
  // Below the least share: refused up front, naming it.
  EngineOptions o;
  o.model_path = testing::StoriesModel().string();
  o.n_ctx = 1024;
  o.kv_format = kF32Kv;
  o.kv_mem_bytes = least - 4096;
  auto small = Engine::Load(o);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("--kv-mem"), std::string::npos) << small.status().ToString();
}

// Sparse retrieval keeps every block's key bounds in memory whatever tier the block is on:
// the plan counts them (and the sums --kv-skipped mean adds) inside the budget.
TEST(KvSpillTest, SparseSummariesComeOutOfTheBudget) {
  auto plan = [&](kv::KvSparseMode mode, bool mean, uint64_t budget) -> MemoryPlan {
    EngineOptions o = StoriesOptions(0, budget);
    o.kv_sparse.mode = mode;
    o.kv_sparse.budget_tokens = 256;
    o.kv_sparse.mean_skipped = mean;
    auto e = Engine::Load(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? (*e)->memory_plan() : MemoryPlan{};
  };
  const MemoryPlan exact = plan(kv::KvSparseMode::kExact, false, 0);
  const MemoryPlan quest = plan(kv::KvSparseMode::kQuest, false, 0);
  const MemoryPlan mean = plan(kv::KvSparseMode::kQuest, true, 0);
  auto ref = LoadStories(0, 0);
  ASSERT_TRUE(ref);
  const ModelHParams& hp = ref->model().hparams();
  // Bounds: 2 * head_dim halves per (layer, block, KV head); sums: 2 * head_dim floats more.
  const uint64_t bounds = (1024 / 16) * static_cast<uint64_t>(hp.n_layer * hp.n_head_kv * hp.head_dim) * 2 * 2;
  EXPECT_EQ(exact.kv_summary_bytes, 0u);
  EXPECT_EQ(quest.kv_summary_bytes, bounds);
  EXPECT_EQ(mean.kv_summary_bytes, 3 * bounds);
  EXPECT_EQ(quest.min_budget_bytes, exact.min_budget_bytes + bounds);
  EXPECT_NE(quest.ToString().find("KV block summaries"), std::string::npos) << quest.ToString();
  // Under one budget, what the weights and the KV cache get shrinks by exactly the summaries.
  const uint64_t budget = exact.min_budget_bytes + exact.kv_bytes;
  const MemoryPlan e2 = plan(kv::KvSparseMode::kExact, false, budget), q2 = plan(kv::KvSparseMode::kQuest, false, budget);
  EXPECT_EQ(q2.weight_budget_bytes + q2.kv_memory_bytes + bounds, e2.weight_budget_bytes + e2.kv_memory_bytes);
}

TEST(KvSpillTest, AMemBudgetTooSmallForTheWholeCacheSpillsItAndKeepsTheTokens) {
  auto ref = LoadStories(0, 0);
  ASSERT_TRUE(ref);
  const std::vector<int32_t> prompt = LongPrompt(*ref);
  const std::vector<int32_t> want = Greedy(*ref, prompt, 120);
  const MemoryPlan& p = ref->memory_plan();
  // The smallest budget (weights streamed too), and one that keeps every weight resident
  // but not the whole cache.
  for (uint64_t budget : {p.min_budget_bytes, p.min_budget_bytes + p.kv_bytes / 2}) {
    SCOPED_TRACE("--mem-budget " + std::to_string(budget));
    auto e = LoadStories(0, budget);
    ASSERT_TRUE(e);
    ASSERT_TRUE(e->memory_plan().kv_tiered) << e->memory_plan().ToString();
    EXPECT_LT(e->memory_plan().kv_memory_bytes, p.kv_bytes);
    EXPECT_EQ(Greedy(*e, prompt, 120), want);
    EXPECT_GT(e->kv().paged().store().TierStats().spilled_bytes, 0u);
  }
}

// ---- Faults, at the level of a batch of sequences over one tiered cache ----

struct Loaded {
  gguf::GgufFile file;
  std::unique_ptr<WeightStore> store;
  std::unique_ptr<LlamaModel> model;
};

enum class Fault { kWrite, kDiskFull, kRead, kShortRead };
const char* FaultName(Fault f) {
  switch (f) {
    case Fault::kWrite: return "failed write";
    case Fault::kDiskFull: return "full disk";
    case Fault::kRead: return "failed read";
    case Fault::kShortRead: return "short read";
  }
  return "?";
}

// The fault, and whether the model decodes in quest mode (sparse retrieval: each step reads
// only its selected blocks, and a fault in one of them ends the sequence the same way).
class KvSpillFaultTest : public ::testing::TestWithParam<std::tuple<Fault, bool>> {
 protected:
  static constexpr int kSeqs = 4;
  static constexpr int32_t kBlocks = 64;

  void SetUp() override {
    auto f = gguf::GgufFile::Open(testing::StoriesModel().string());
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    m_.file = std::move(*f);
    m_.store = std::move(InMemoryWeightStore::Open(m_.file)).value();
    m_.model = std::move(LlamaModel::Create(m_.file, m_.store.get())).value();
    if (std::get<1>(GetParam())) {
      kv::KvSparseOptions quest;
      quest.mode = kv::KvSparseMode::kQuest;
      quest.budget_tokens = 64;  // 4 of the sequences' 4 to 7 blocks
      m_.model->set_kv_sparse(quest);
    }
    pool_ = std::move(ThreadPool::Create(2)).value();
    fault_ = std::make_unique<io::FaultInjectionEnv>(&mem_);
  }

  std::unique_ptr<kv::PagedKvCache> MakeCache(bool tiered) {
    const ModelHParams& hp = m_.model->hparams();
    kv::PagedKvOptions o;
    o.n_layer = hp.n_layer;
    o.n_head_kv = hp.n_head_kv;
    o.head_dim = hp.head_dim;
    o.format = kF32Kv;
    o.n_blocks = kBlocks;
    o.identity = 7;
    if (tiered) {
      o.tier.env = fault_.get();
      o.tier.spill_dir = "spill";
      // Two layers' worth of the blocks in use: every step evicts, writes back and reads.
      o.tier.budget_bytes = 2 * 24 * kv::PagedKvStore::TieredSlotBytes(hp.n_head_kv, hp.head_dim, kF32Kv);
    }
    auto c = kv::PagedKvCache::Create(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(*c);
  }

  uint64_t Slot() const {
    const ModelHParams& hp = m_.model->hparams();
    return kv::PagedKvStore::TieredSlotBytes(hp.n_head_kv, hp.head_dim, kF32Kv);
  }

  Loaded m_;
  std::unique_ptr<ThreadPool> pool_;
  io::MemStorageEnv mem_;
  std::unique_ptr<io::FaultInjectionEnv> fault_;
};

// Four sequences (one a fork of another) prefill together, then decode step by step. The
// fault is armed on sequence 2's layer-0 blocks of the spill file after the prompts.
TEST_P(KvSpillFaultTest, EndsOnlyTheSequenceItHitsAndTheOthersGoOnExactly) {
  const Fault fault = std::get<0>(GetParam());
  const int64_t V = m_.model->hparams().n_vocab;
  auto ref = MakeCache(false);
  auto cache = MakeCache(true);
  std::vector<std::vector<int32_t>> prompts(kSeqs);
  for (int s = 0; s < kSeqs; ++s)
    for (int i = 0; i < 40 + 13 * s; ++i) prompts[s].push_back(1 + (i * 7 + s * 31) % 500);
  prompts[3] = prompts[0];  // sequence 3 forks from 0 after the prompt

  std::map<int, std::vector<float>> last[2];  // per cache: each sequence's latest logits
  std::set<int> failed;
  std::string message;
  auto step = [&](int which, kv::PagedKvCache& c, const std::map<int, std::vector<int32_t>>& add) {
    if (add.empty()) return;
    Batch b;
    for (const auto& [s, toks] : add) {
      const int64_t p0 = c.Computed(s);
      const Status added = c.AddTokens(s, toks);
      ASSERT_TRUE(added.ok()) << added.ToString();
      for (size_t i = 0; i < toks.size(); ++i) b.Add(toks[i], p0 + static_cast<int64_t>(i), s, i + 1 == toks.size());
    }
    std::vector<float> logits;
    std::vector<LlamaModel::SeqFailure> bad;
    const Status st = m_.model->Forward(b, c, &logits, pool_.get(), which == 1 ? &bad : nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (const auto& f : bad) {
      failed.insert(f.seq);
      message = f.status.ToString();
      c.Free(f.seq);  // ends it: its blocks are discarded
    }
    int row = 0;
    for (const auto& [s, toks] : add) {
      if (!std::count_if(bad.begin(), bad.end(), [&](const auto& f) { return f.seq == s; }))
        last[which][s].assign(logits.begin() + row * V, logits.begin() + (row + 1) * V);
      ++row;
    }
  };
  for (int which = 0; which < 2; ++which) {
    kv::PagedKvCache& c = which == 0 ? *ref : *cache;
    std::map<int, std::vector<int32_t>> add;
    for (int s = 0; s < 3; ++s) add[s] = prompts[s];
    step(which, c, add);
    ASSERT_TRUE(c.Fork(0, 3).ok());
  }
  // Arm the fault on sequence 2's blocks in layer 0.
  io::FaultSpec spec;
  std::vector<kv::BlockId> table(cache->blocks().BlockTable(2).begin(), cache->blocks().BlockTable(2).end());
  const uint64_t lo = static_cast<uint64_t>(*std::min_element(table.begin(), table.end())) * Slot();
  const uint64_t hi = (static_cast<uint64_t>(*std::max_element(table.begin(), table.end())) + 1) * Slot();
  ASSERT_EQ(hi - lo, table.size() * Slot()) << "sequence 2's blocks are not contiguous: the fault would hit others";
  switch (fault) {
    case Fault::kWrite: spec.write_fail_begin = lo, spec.write_fail_end = hi; break;
    case Fault::kDiskFull: break;  // set when armed
    case Fault::kRead: spec.fail_begin = lo, spec.fail_end = hi; break;
    case Fault::kShortRead: spec.short_begin = lo, spec.short_end = hi; break;
  }
  // A full disk fails a sequence once it needs space never used before: a new block. It is
  // armed after a few steps have spilled most blocks once, and the run stops before
  // sequence 2, the longest, crosses into a new block (at step 14).
  const int arm_at = fault == Fault::kDiskFull ? 5 : 0;
  const int steps = fault == Fault::kDiskFull ? 13 : 24;
  for (int t = 0; t < steps; ++t) {
    if (t == arm_at) {
      if (fault == Fault::kDiskFull) spec.disk_space_bytes = fault_->spill_bytes_used();
      fault_->SetFaults(spec);
    }
    // Each sequence continues with its reference greedy token (3, forked from 0, with the next id).
    std::map<int, int32_t> next;
    for (int s = 0; s < kSeqs; ++s) {
      const std::vector<float>& l = last[0].count(s) ? last[0][s] : last[0][0];
      next[s] = Argmax(l.data(), V) + (s == 3 ? 1 : 0);
    }
    for (int which = 0; which < 2; ++which) {
      kv::PagedKvCache& c = which == 0 ? *ref : *cache;
      std::map<int, std::vector<int32_t>> add;
      for (int s = 0; s < kSeqs; ++s)
        if (which == 0 || !failed.count(s)) add[s] = {next[s]};
      step(which, c, add);
      if (which == 1)
        for (const auto& [s, l] : last[1])
          if (!failed.count(s)) {
            ASSERT_EQ(l, last[0][s]) << "sequence " << s << " at step " << t;
          }
    }
  }
  ASSERT_FALSE(failed.empty()) << FaultName(fault) << " never hit (the test would prove nothing)";
  if (fault != Fault::kDiskFull) {
    EXPECT_EQ(failed, std::set<int>{2}) << message;
    EXPECT_NE(message.find("sequence 2"), std::string::npos) << message;
  }
  EXPECT_NE(message.find("layer "), std::string::npos) << message;
  EXPECT_NE(message.find("block "), std::string::npos) << message;
  const char* cause = fault == Fault::kWrite      ? "injected write fault"
                      : fault == Fault::kDiskFull ? "No space left on device"
                      : fault == Fault::kRead     ? "injected fault"
                                                  : "short read";
  EXPECT_NE(message.find(cause), std::string::npos) << message;
  if (fault == Fault::kDiskFull) {
    // In exact mode every block has been spilled once by the time the disk fills; quest
    // reads fewer blocks, so which blocks have space on disk then differs.
    if (!std::get<1>(GetParam())) EXPECT_EQ(failed.count(2), 0u) << "sequence 2 needed no new space: " << message;
    EXPECT_LT(failed.size(), static_cast<size_t>(kSeqs));
  }

  // The cache goes on: with the faults gone, a new sequence runs exactly as in memory.
  fault_->ClearFaults();
  std::vector<int32_t> fresh(30);
  for (int i = 0; i < 30; ++i) fresh[i] = 5 + i;
  for (int which = 0; which < 2; ++which) {
    kv::PagedKvCache& c = which == 0 ? *ref : *cache;
    for (int s = 0; s < kSeqs; ++s)
      if (c.blocks().HasSequence(s)) c.Free(s);
    step(which, c, {{9, fresh}});
  }
  EXPECT_EQ(last[1][9], last[0][9]);
}

INSTANTIATE_TEST_SUITE_P(Faults, KvSpillFaultTest,
                         ::testing::Combine(::testing::Values(Fault::kWrite, Fault::kDiskFull, Fault::kRead,
                                                              Fault::kShortRead),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           std::string n = FaultName(std::get<0>(info.param));
                           std::replace(n.begin(), n.end(), ' ', '_');
                           return n + (std::get<1>(info.param) ? "_quest" : "");
                         });

}  // namespace
}  // namespace tierlm
