// Many sequences in one forward pass over the paged KV cache: a sequence's logits do not
// depend on what else is in the batch or on how its prompt was chunked (bit for bit), and
// the paged path agrees with the contiguous one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "kernels/cpu_features.h"
#include "kernels/matmul.h"
#include "test_printers.h"
#include "kv/kv_cache.h"
#include "kv/paged_kv_cache.h"
#include "model/batch.h"
#include "model/llama_model.h"
#include "test_paths.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

struct Loaded {
  gguf::GgufFile file;
  std::unique_ptr<WeightStore> store;
  std::unique_ptr<LlamaModel> model;
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
  return l;
}

std::unique_ptr<kv::PagedKvCache> MakeCache(const LlamaModel& m, kv::KvFormat f, int32_t n_blocks) {
  const ModelHParams& hp = m.hparams();
  kv::PagedKvOptions o;
  o.n_layer = hp.n_layer;
  o.n_head_kv = hp.n_head_kv;
  o.head_dim = hp.head_dim;
  o.format = f;
  o.n_blocks = n_blocks;
  o.identity = 42;
  auto c = kv::PagedKvCache::Create(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::move(*c);
}

std::vector<int32_t> RandomTokens(std::mt19937& rng, int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int32_t> d(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = d(rng);
  return t;
}

// Logits of every position of `tokens`, run alone: the whole prompt in one batch.
std::vector<std::vector<float>> Alone(LlamaModel& m, kv::KvFormat f, const std::vector<int32_t>& tokens,
                                      ThreadPool* pool) {
  auto cache = MakeCache(m, f, 64);
  EXPECT_TRUE(cache->AddTokens(0, tokens).ok());
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.Add(tokens[i], static_cast<int64_t>(i), 0, true);
  std::vector<float> logits;
  const Status st = m.Forward(b, *cache, &logits, pool);
  EXPECT_TRUE(st.ok()) << st.ToString();
  const int64_t V = m.hparams().n_vocab;
  std::vector<std::vector<float>> rows;
  for (size_t i = 0; i < tokens.size(); ++i) rows.emplace_back(logits.begin() + i * V, logits.begin() + (i + 1) * V);
  return rows;
}

struct InvCase {
  const char* preset;
  const char* type;
  const char* kv_type;
  KernelPath path;
};
void PrintTo(const InvCase& c, std::ostream* os) {
  *os << c.preset << "-" << c.type << " kv " << c.kv_type << " " << KernelPathName(c.path);
}

class BatchInvarianceTest : public ::testing::TestWithParam<InvCase> {
 protected:
  void SetUp() override {
    if (!KernelPathSupported(GetParam().path)) GTEST_SKIP() << "this CPU lacks " << KernelPathName(GetParam().path);
    ForceKernelPath(GetParam().path);
  }
  void TearDown() override { ForceKernelPath(std::nullopt); }
};

// Several sequences of different lengths are fed in random chunks, mixed with each other
// (decode steps of some beside prefill chunks of others), with a fork in the middle; every
// position's logits must equal those of the sequence run alone, bit for bit.
TEST_P(BatchInvarianceTest, MixedBatchesEqualEachSequenceAlone) {
  const InvCase c = GetParam();
  auto l = Load(testing::SynthModel(c.preset, c.type));
  LlamaModel& m = *l->model;
  auto kt = kv::ParseKvType(c.kv_type);
  ASSERT_TRUE(kt.ok());
  const kv::KvFormat fmt{*kt, *kt, 16};
  ThreadPool pool(2);
  std::mt19937 rng(1234);
  const int64_t V = m.hparams().n_vocab;

  // Sequences 0..4 of lengths 1..300 (300 > one 256-key span); sequence 5 is a fork of 2
  // after its first 20 tokens.
  std::map<kv::SeqId, std::vector<int32_t>> seqs;
  const int64_t lengths[] = {1, 37, 300, 16, 53};
  for (kv::SeqId s = 0; s < 5; ++s) seqs[s] = RandomTokens(rng, lengths[s], V);
  const int64_t fork_at = 20;
  std::vector<int32_t> forked(seqs[2].begin(), seqs[2].begin() + fork_at);
  const auto tail = RandomTokens(rng, 15, V);
  forked.insert(forked.end(), tail.begin(), tail.end());
  seqs[5] = forked;

  std::map<kv::SeqId, std::vector<std::vector<float>>> want;
  for (auto& [s, toks] : seqs) want[s] = Alone(m, fmt, toks, &pool);

  auto cache = MakeCache(m, fmt, 64);
  std::map<kv::SeqId, int64_t> done;
  std::map<kv::SeqId, std::vector<std::vector<float>>> got;
  bool forked_yet = false;
  int steps = 0;
  while (true) {
    Batch b;
    std::vector<std::pair<kv::SeqId, int64_t>> rows;
    for (auto& [s, toks] : seqs) {
      if (s == 5 && !forked_yet) continue;
      const int64_t have = done[s], total = static_cast<int64_t>(toks.size());
      if (have == total) continue;
      if (rng() % 4 == 0) continue;  // sits this step out
      // A decode step (1 token) or a prefill chunk of 2..24.
      const int64_t n = std::min<int64_t>(total - have, rng() % 2 ? 1 : 2 + rng() % 23);
      const std::vector<int32_t> chunk(toks.begin() + have, toks.begin() + have + n);
      ASSERT_TRUE(cache->AddTokens(s, chunk).ok());
      for (int64_t i = 0; i < n; ++i) {
        b.Add(chunk[static_cast<size_t>(i)], have + i, s, true);
        rows.push_back({s, have + i});
      }
      done[s] = have + n;
    }
    if (b.size() == 0) {
      bool all = true;
      for (auto& [s, toks] : seqs) all = all && done[s] == static_cast<int64_t>(toks.size());
      if (all && forked_yet) break;
    } else {
      std::vector<float> logits;
      const Status st = m.Forward(b, *cache, &logits, &pool);
      ASSERT_TRUE(st.ok()) << st.ToString();
      ASSERT_EQ(static_cast<int64_t>(logits.size()), b.size() * V);
      for (size_t r = 0; r < rows.size(); ++r)
        got[rows[r].first].emplace_back(logits.begin() + r * V, logits.begin() + (r + 1) * V);
    }
    if (!forked_yet && done[2] >= fork_at) {
      // Fork 2 at position fork_at: 2 may be past it already; the fork keeps the first
      // fork_at positions (Truncate) and gets its own tail.
      ASSERT_TRUE(cache->Fork(2, 5).ok());
      ASSERT_TRUE(cache->Truncate(5, fork_at).ok());
      done[5] = fork_at;
      got[5] = std::vector<std::vector<float>>(got[2].begin(), got[2].begin() + fork_at);
      forked_yet = true;
    }
    ASSERT_LT(++steps, 1000);
  }
  for (auto& [s, rows] : want) {
    ASSERT_EQ(got[s].size(), rows.size()) << "sequence " << s;
    for (size_t p = 0; p < rows.size(); ++p)
      ASSERT_EQ(got[s][p], rows[p]) << "sequence " << s << " position " << p << " differs from the run alone";
  }
}

constexpr KernelPath kS = KernelPath::kScalar, kA2 = KernelPath::kAvx2, kA5 = KernelPath::kAvx512,
                     kAmx = KernelPath::kAmx;
INSTANTIATE_TEST_SUITE_P(
    Models, BatchInvarianceTest,
    ::testing::Values(
        InvCase{"tiny", "f16", "f16", kA5}, InvCase{"tiny", "f32", "f32", kA5},
        // Quantized and BF16 weights (AVX-512 prefill panel kernels for long chunks): every KV type.
        InvCase{"tiny", "q4_0", "f32", kA5}, InvCase{"tiny", "q4_0", "f16", kA5},
        InvCase{"tiny", "q4_0", "bf16", kA5}, InvCase{"tiny", "q4_0", "q8_0", kA5},
        InvCase{"tiny", "q4_0", "q4_0", kA5}, InvCase{"tiny", "q4_k_m", "f16", kA5},
        InvCase{"tiny", "bf16", "f16", kA5}, InvCase{"qwen2-tiny", "q8_0", "f16", kA5},
        InvCase{"moe-tiny", "q8_0", "f16", kA5}, InvCase{"moe-tiny", "q8_0", "q8_0", kA5},
        InvCase{"qwen3moe-tiny", "q4_0", "f16", kA5},
        // AMX tile prefill kernels (Q4_0, Q8_0, Q4_K, Q6_K).
        InvCase{"tiny", "q4_0", "q8_0", kAmx}, InvCase{"tiny", "q4_k_m", "f16", kAmx},
        InvCase{"qwen2-tiny", "q8_0", "f16", kAmx}, InvCase{"moe-tiny", "q8_0", "f16", kAmx},
        // The other kernel paths (no prefill kernels).
        InvCase{"tiny", "q4_0", "f16", kA2}, InvCase{"moe-tiny", "q8_0", "q4_0", kA2},
        InvCase{"tiny", "q4_k_m", "f16", kS}, InvCase{"tiny", "bf16", "f16", kA2}),
    [](const auto& info) {
      std::string n = std::string(info.param.preset) + "_" + info.param.type + "_kv_" + info.param.kv_type + "_" +
                      std::string(KernelPathName(info.param.path));
      return testing::CaseName(n);
    });

// Logits of `tokens` fed in chunks of `chunk` positions, one forward per chunk.
std::vector<std::vector<float>> Chunked(LlamaModel& m, kv::KvFormat f, const std::vector<int32_t>& tokens,
                                        size_t chunk, ThreadPool* pool) {
  auto cache = MakeCache(m, f, 64);
  std::vector<std::vector<float>> rows;
  const int64_t V = m.hparams().n_vocab;
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    const size_t n = std::min(chunk, tokens.size() - i);
    EXPECT_TRUE(cache->AddTokens(0, {&tokens[i], n}).ok());
    Batch b;
    for (size_t j = i; j < i + n; ++j) b.Add(tokens[j], static_cast<int64_t>(j), 0, true);
    std::vector<float> logits;
    const Status st = m.Forward(b, *cache, &logits, pool);
    EXPECT_TRUE(st.ok()) << st.ToString();
    for (size_t j = 0; j < n; ++j) rows.emplace_back(logits.begin() + j * V, logits.begin() + (j + 1) * V);
  }
  return rows;
}

// A prompt prefilled whole (the prefill panel kernels, in 64-token cache blocks), in chunks
// of 512, 64 or 7, or one token per forward (the decode kernels) gives the same logits at
// every position, bit for bit: the prefill kernels compute exactly the decode kernels'
// arithmetic. Every weight type with a prefill kernel (q4_k_m: Q4_K and Q6_K).
class PrefillChunkingTest : public ::testing::TestWithParam<std::tuple<const char*, KernelPath>> {
 protected:
  void SetUp() override {
    if (!KernelPathSupported(std::get<1>(GetParam())))
      GTEST_SKIP() << "this CPU lacks " << KernelPathName(std::get<1>(GetParam()));
    ForceKernelPath(std::get<1>(GetParam()));
  }
  void TearDown() override { ForceKernelPath(std::nullopt); }
};

TEST_P(PrefillChunkingTest, ChunkSizesGiveIdenticalLogits) {
  auto l = Load(testing::SynthModel("tiny", std::get<0>(GetParam())));
  ThreadPool pool(2);
  std::mt19937 rng(7);
  const auto toks = RandomTokens(rng, 600, l->model->hparams().n_vocab);
  const kv::KvFormat fmt{GgmlType::kF16, GgmlType::kF16, 16};
  const auto whole = Alone(*l->model, fmt, toks, &pool);
  for (size_t chunk : {512, 64, 7, 1}) {
    const auto got = Chunked(*l->model, fmt, toks, chunk, &pool);
    ASSERT_EQ(got.size(), whole.size());
    for (size_t p = 0; p < got.size(); ++p) {
      ASSERT_EQ(got[p].size(), whole[p].size());
      ASSERT_EQ(std::memcmp(got[p].data(), whole[p].data(), got[p].size() * sizeof(float)), 0)
          << "chunks of " << chunk << ": position " << p << " differs from the whole prompt in one batch";
    }
  }
}

// The other paths have no prefill kernels (and are slower): one type each.
INSTANTIATE_TEST_SUITE_P(Types, PrefillChunkingTest,
                         ::testing::Values(std::make_tuple("q4_0", kA5), std::make_tuple("q8_0", kA5),
                                           std::make_tuple("q4_k_m", kA5), std::make_tuple("bf16", kA5),
                                           std::make_tuple("q4_0", kAmx), std::make_tuple("q8_0", kAmx),
                                           std::make_tuple("q4_k_m", kAmx),
                                           std::make_tuple("q4_0", kA2), std::make_tuple("q4_0", kS)),
                         [](const auto& info) {
                           return testing::CaseName(std::string(std::get<0>(info.param)) + "_" +
                                                    std::string(KernelPathName(std::get<1>(info.param))));
                         });

// A batch that does not continue its sequences where the cache says fails with the
// sequence and position named, and leaves the cache usable.
TEST(PagedForwardTest, BatchesOutOfStepWithTheCacheAreRefused) {
  auto l = Load(testing::SynthModel("tiny", "q8_0"));
  LlamaModel& m = *l->model;
  ThreadPool pool(2);
  auto cache = MakeCache(m, {GgmlType::kF16, GgmlType::kF16, 16}, 8);
  const std::vector<int32_t> toks = {1, 300, 301, 302};
  ASSERT_TRUE(cache->AddTokens(4, toks).ok());
  std::vector<float> logits;
  auto expect_error = [&](const Batch& b, const std::string& want) {
    const Status st = m.Forward(b, *cache, &logits, &pool);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find(want), std::string::npos) << st.ToString();
  };
  Batch b;
  b.Add(300, 1, 4, true);  // skips position 0
  expect_error(b, "sequence 4 token 0 is at position 1, expected 0");
  b.Clear();
  b.Add(9, 0, 4, true);  // not the recorded token
  expect_error(b, "differs from the one the KV cache recorded");
  b.Clear();
  b.Add(1, 0, 5, true);  // a sequence the cache does not hold
  expect_error(b, "sequence 5 position 0 was not added");
  b.Clear();
  expect_error(b, "no tokens");
  // The cache is still usable: the whole prompt, only the last logits wanted.
  for (int64_t i = 0; i < 4; ++i) b.Add(toks[static_cast<size_t>(i)], i, 4, i == 3);
  ASSERT_TRUE(m.Forward(b, *cache, &logits, &pool).ok());
  EXPECT_EQ(static_cast<int64_t>(logits.size()), m.hparams().n_vocab);
  EXPECT_EQ(cache->Computed(4), 4);
  // The context is bounded by the cache's blocks: Later while others hold them, Impossible past them all.
  EXPECT_EQ(*cache->Reserve(6, 8 * 16), Admit::kLater);
  EXPECT_EQ(*cache->Reserve(6, 8 * 16 + 1), Admit::kImpossible);
  const Status st = cache->AddTokens(6, std::vector<int32_t>(8 * 16, 5));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("sequence 6"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace tierlm
