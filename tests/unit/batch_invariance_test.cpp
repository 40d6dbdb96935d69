// Many sequences in one forward pass over the paged KV cache: a sequence's logits do not
// depend on what else is in the batch or on how its prompt was chunked (bit for bit), and
// the paged path agrees with the contiguous one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
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
  bool invariant_matmul;  // SetMatmulBatchInvariant (needed for weights with prefill kernels)
  KernelPath path;
};
void PrintTo(const InvCase& c, std::ostream* os) {
  *os << c.preset << "-" << c.type << " kv " << c.kv_type << (c.invariant_matmul ? " invariant" : "") << " "
      << KernelPathName(c.path);
}

class BatchInvarianceTest : public ::testing::TestWithParam<InvCase> {
 protected:
  void SetUp() override {
    if (!KernelPathSupported(GetParam().path)) GTEST_SKIP() << "this CPU lacks " << KernelPathName(GetParam().path);
    ForceKernelPath(GetParam().path);
    SetMatmulBatchInvariant(GetParam().invariant_matmul);
  }
  void TearDown() override {
    SetMatmulBatchInvariant(false);
    ForceKernelPath(std::nullopt);
  }
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

constexpr KernelPath kS = KernelPath::kScalar, kA2 = KernelPath::kAvx2, kA5 = KernelPath::kAvx512;
INSTANTIATE_TEST_SUITE_P(
    Models, BatchInvarianceTest,
    ::testing::Values(
        // F16 weights have no prefill kernel: invariant without the switch.
        InvCase{"tiny", "f16", "f16", false, kA5}, InvCase{"tiny", "f32", "f32", false, kA5},
        // Quantized weights: every KV type, with invariant matmuls.
        InvCase{"tiny", "q4_0", "f32", true, kA5}, InvCase{"tiny", "q4_0", "f16", true, kA5},
        InvCase{"tiny", "q4_0", "bf16", true, kA5}, InvCase{"tiny", "q4_0", "q8_0", true, kA5},
        InvCase{"tiny", "q4_0", "q4_0", true, kA5}, InvCase{"tiny", "q4_k_m", "f16", true, kA5},
        InvCase{"tiny", "bf16", "f16", true, kA5}, InvCase{"qwen2-tiny", "q8_0", "f16", true, kA5},
        InvCase{"moe-tiny", "q8_0", "f16", true, kA5}, InvCase{"moe-tiny", "q8_0", "q8_0", true, kA5},
        InvCase{"qwen3moe-tiny", "q4_0", "f16", true, kA5},
        // The other kernel paths have no prefill kernels.
        InvCase{"tiny", "q4_0", "f16", false, kA2}, InvCase{"moe-tiny", "q8_0", "q4_0", false, kA2},
        InvCase{"tiny", "q4_k_m", "f16", false, kS}),
    [](const auto& info) {
      std::string n = std::string(info.param.preset) + "_" + info.param.type + "_kv_" + info.param.kv_type +
                      (info.param.invariant_matmul ? "_invariant_" : "_") + std::string(KernelPathName(info.param.path));
      return testing::CaseName(n);
    });

// Without the switch, quantized weights take the prefill kernels for a long prompt and the
// decode kernels for one token: the same position's logits then differ (slightly). This is
// what SetMatmulBatchInvariant exists for; if it ever stops differing, the switch and its
// cost can go.
TEST(BatchInvarianceDefaultTest, QuantizedPrefillKernelsRoundDifferently) {
  if (!KernelPathSupported(KernelPath::kAvx512)) GTEST_SKIP() << "prefill panel kernels are AVX-512 only";
  ForceKernelPath(KernelPath::kAvx512);
  SetMatmulBatchInvariant(false);
  auto l = Load(testing::SynthModel("tiny", "q4_0"));
  ThreadPool pool(2);
  std::mt19937 rng(7);
  const auto toks = RandomTokens(rng, 40, l->model->hparams().n_vocab);
  const kv::KvFormat fmt{GgmlType::kF16, GgmlType::kF16, 16};
  const auto whole = Alone(*l->model, fmt, toks, &pool);
  // The same prompt one token per forward.
  auto cache = MakeCache(*l->model, fmt, 64);
  double max_diff = 0;
  for (size_t i = 0; i < toks.size(); ++i) {
    ASSERT_TRUE(cache->AddTokens(0, {&toks[i], 1}).ok());
    Batch b;
    b.Add(toks[i], static_cast<int64_t>(i), 0, true);
    std::vector<float> logits;
    ASSERT_TRUE(l->model->Forward(b, *cache, &logits, &pool).ok());
    for (size_t v = 0; v < logits.size(); ++v) max_diff = std::max(max_diff, std::fabs(double(logits[v]) - whole[i][v]));
  }
  ForceKernelPath(std::nullopt);
  EXPECT_GT(max_diff, 0.0);
  EXPECT_LT(max_diff, 0.05);  // rounding, not a bug
  std::printf("prefill vs decode kernels, Q4_0 weights: max abs logit difference %.3g\n", max_diff);
}

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
