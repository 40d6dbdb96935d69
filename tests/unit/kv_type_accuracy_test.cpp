// The accuracy cost of each KV cache type (-ctk / -ctv): mean and max KL(f32 KV || type)
// per position and top-1 agreement, on a synthetic model and on stories260K (a trained one),
// printed and bounded. Lossless types must stay within their rounding; the bounds are about
// 3-10x what was measured.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "kv/paged_kv_cache.h"
#include "model/batch.h"
#include "model/llama_model.h"
#include "runtime/sampler.h"
#include "test_paths.h"
#include "test_printers.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

std::vector<float> RunPaged(LlamaModel& m, kv::KvFormat f, const std::vector<int32_t>& toks, ThreadPool* pool) {
  const ModelHParams& hp = m.hparams();
  kv::PagedKvOptions o{hp.n_layer, hp.n_head_kv, hp.head_dim, f, 64, 0};
  auto cache = kv::PagedKvCache::Create(o);
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  std::vector<float> all;
  // Prompt of 32 in one batch, then decode one token at a time: decode reads quantized keys
  // of every earlier position.
  for (size_t begin = 0; begin < toks.size();) {
    const size_t end = begin == 0 ? std::min<size_t>(32, toks.size()) : begin + 1;
    const std::vector<int32_t> chunk(toks.begin() + begin, toks.begin() + end);
    EXPECT_TRUE((*cache)->AddTokens(0, chunk).ok());
    Batch b;
    for (size_t i = begin; i < end; ++i) b.Add(toks[i], static_cast<int64_t>(i), 0, true);
    std::vector<float> part;
    const Status st = m.Forward(b, **cache, &part, pool);
    EXPECT_TRUE(st.ok()) << st.ToString();
    all.insert(all.end(), part.begin(), part.end());
    begin = end;
  }
  return all;
}

struct Kl {
  double mean = 0, max = 0, top1 = 0;
};

Kl Compare(const std::vector<float>& p_logits, const std::vector<float>& q_logits, int64_t V) {
  Kl r;
  const int64_t n = static_cast<int64_t>(p_logits.size()) / V;
  for (int64_t t = 0; t < n; ++t) {
    const float* a = p_logits.data() + t * V;
    const float* b = q_logits.data() + t * V;
    double ma = a[0], mb = b[0];
    for (int64_t v = 0; v < V; ++v) ma = std::max(ma, double(a[v])), mb = std::max(mb, double(b[v]));
    double za = 0, zb = 0;
    for (int64_t v = 0; v < V; ++v) za += std::exp(a[v] - ma), zb += std::exp(b[v] - mb);
    double kl = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double pa = std::exp(a[v] - ma) / za, la = a[v] - ma - std::log(za), lb = b[v] - mb - std::log(zb);
      kl += pa * (la - lb);
    }
    r.mean += kl / n;
    r.max = std::max(r.max, kl);
    r.top1 += (Sampler::Argmax({a, static_cast<size_t>(V)}) == Sampler::Argmax({b, static_cast<size_t>(V)})) / double(n);
  }
  return r;
}

struct AccCase {
  const char* model;  // "stories260K" or a synth preset-type
  const char* kv;
  double max_mean_kl;
};
void PrintTo(const AccCase& c, std::ostream* os) { *os << c.model << " kv " << c.kv; }
class KvTypeAccuracyTest : public ::testing::TestWithParam<AccCase> {};

TEST_P(KvTypeAccuracyTest, KlAgainstF32KvIsSmall) {
  const AccCase c = GetParam();
  const std::string name = c.model;
  const auto path = name == "stories260K" ? testing::StoriesModel()
                                          : testing::SynthModel(name.substr(0, name.rfind('-')),
                                                                name.substr(name.rfind('-') + 1));
  auto file = gguf::GgufFile::Open(path.string());
  ASSERT_TRUE(file.ok());
  auto store = InMemoryWeightStore::Open(*file);
  ASSERT_TRUE(store.ok());
  auto model = LlamaModel::Create(*file, store->get());
  ASSERT_TRUE(model.ok());
  const int64_t V = (*model)->hparams().n_vocab;
  ThreadPool pool(2);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> d(3, static_cast<int32_t>(V - 1));
  std::vector<int32_t> toks(96);
  for (auto& t : toks) t = d(rng);
  toks[0] = 1;
  auto t = kv::ParseKvType(c.kv);
  ASSERT_TRUE(t.ok());
  const auto ref = RunPaged(**model, {GgmlType::kF32, GgmlType::kF32, 16}, toks, &pool);
  const auto got = RunPaged(**model, {*t, *t, 16}, toks, &pool);
  const Kl k = Compare(ref, got, V);
  std::printf("%s -ctk %s -ctv %s: mean KL %.3g, max KL %.3g, top-1 agreement %.1f%% (%zu positions)\n", c.model, c.kv,
              c.kv, k.mean, k.max, 100 * k.top1, toks.size());
  EXPECT_LE(k.mean, c.max_mean_kl);
  EXPECT_GT(k.mean, 0.0) << "a lossy type changed nothing: is it stored at all?";
}

INSTANTIATE_TEST_SUITE_P(Types, KvTypeAccuracyTest,
                         ::testing::Values(AccCase{"stories260K", "f16", 1e-5}, AccCase{"stories260K", "bf16", 1e-3},
                                           AccCase{"tiny-f16", "f16", 2e-7}, AccCase{"tiny-f16", "bf16", 1e-5},
                                           AccCase{"tiny-f16", "q8_0", 1e-4}, AccCase{"tiny-f16", "q4_0", 1e-2}),
                         [](const auto& info) {
                           std::string n = std::string(info.param.model) + "_" + info.param.kv;
                           return testing::CaseName(n);
                         });

}  // namespace
}  // namespace tierlm
