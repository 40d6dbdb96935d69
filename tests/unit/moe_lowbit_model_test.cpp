// The low-bit expert fallback through the whole model, against the independent PyTorch
// reference (tests/reference: its own cache reader, `logits --lowbit-cache`, `kl`):
// lowbit-all logits (batch and decode paths) match the reference's lowbit model, tierlm's
// KL(exact || lowbit-all) per position matches the reference's; exact mode on a streaming
// budget with the cache attached stays bit-identical to the in-memory run; corrupt copies
// fail the forward pass, stale caches are rebuilt.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "io/posix_storage_env.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"
#include "model/moe_ffn.h"
#include "synth/synth_model.h"
#include "test_paths.h"
#include "tiers/lowbit_expert_cache.h"
#include "tiers/tiered_weight_store.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

namespace fs = std::filesystem;

const std::vector<int32_t> kTokens = {1, 300, 301, 5, 260, 400, 77, 1, 2, 511, 263, 290};

std::string TokenArg() {
  std::string s;
  for (int32_t t : kTokens) s += (s.empty() ? "" : ",") + std::to_string(t);
  return s;
}

// gguf_ref.py CMD MODEL --tokens ... --lowbit-cache CACHE; the parsed JSON, or a failure.
::testing::AssertionResult RunReference(const std::string& cmd, const std::string& model, const std::string& cache,
                                        const fs::path& out, nlohmann::json* result, std::string* log = nullptr) {
  const std::string script = (testing::SourceDir() / "tests/reference/gguf_ref.py").string();
  const testing::CommandResult r =
      testing::RunShell("/usr/bin/python3 " + testing::Quote(script) + " " + cmd + " " + testing::Quote(model) +
                        " --tokens " + TokenArg() + " --lowbit-cache " + testing::Quote(cache) + " --out " +
                        testing::Quote(out.string()));
  if (log) *log = r.output;
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "gguf_ref.py " << cmd << " failed: " << r.output;
  std::ifstream in(out);
  *result = nlohmann::json::parse(in);
  return ::testing::AssertionSuccess();
}

// All-position logits of kTokens: one batch, or one decode step (n == 1) per token.
Status Logits(LlamaModel& model, bool one_by_one, ThreadPool* pool, std::vector<float>* out) {
  out->clear();
  TIERLM_ASSIGN_OR_RETURN(auto kv, KvCache::Create(model.kv_shape(), 64));
  if (!one_by_one) return model.Forward(kTokens, kv, true, out, pool);
  std::vector<float> step;
  for (int32_t t : kTokens) {
    TIERLM_RETURN_IF_ERROR(model.Forward({&t, 1}, kv, false, &step, pool));
    out->insert(out->end(), step.begin(), step.end());
  }
  return Status::Ok();
}

double MaxDiff(const std::vector<float>& got, const nlohmann::json& rows, int64_t n_vocab) {
  double d = 0;
  for (size_t p = 0; p < rows.size(); ++p) {
    const auto row = rows[p].get<std::vector<double>>();
    for (int64_t v = 0; v < n_vocab; ++v) d = std::max(d, std::fabs(got[p * n_vocab + v] - row[v]));
  }
  return d;
}

// KL(p || q) per position of softmax(exact) and softmax(lowbit), in double.
std::vector<double> KlPerPosition(const std::vector<float>& exact, const std::vector<float>& lowbit, int64_t n_vocab) {
  std::vector<double> kl;
  auto log_softmax = [&](const float* l) {
    std::vector<double> o(l, l + n_vocab);
    const double mx = *std::max_element(o.begin(), o.end());
    double sum = 0;
    for (double v : o) sum += std::exp(v - mx);
    for (double& v : o) v = v - mx - std::log(sum);
    return o;
  };
  for (size_t p = 0; p * n_vocab < exact.size(); ++p) {
    const auto lp = log_softmax(&exact[p * n_vocab]);
    const auto lq = log_softmax(&lowbit[p * n_vocab]);
    double k = 0;
    for (int64_t v = 0; v < n_vocab; ++v) k += std::exp(lp[v]) * (lp[v] - lq[v]);
    kl.push_back(k);
  }
  return kl;
}

bool AllFinite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

struct Case {
  const char* type;
  uint64_t seed;  // q8_0 seed 7 has a router near-tie (layer 1, position 2: relative gap
                  // 0.4% between the 2nd and 3rd expert) that activation rounding flips
  double tolerance;  // max |tierlm lowbit-all - reference lowbit| logit difference
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.type << " seed " << c.seed; }

class MoeLowbitModelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir(std::string("moe-lowbit-model-") + GetParam().type);
    model_path_ = (dir_ / "moe.gguf").string();
    WriteModel(GetParam().seed);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteModel(uint64_t seed) {
    auto spec = SynthPreset("moe-tiny", "llama");
    ASSERT_TRUE(spec.has_value());
    auto type = ParseSynthType(GetParam().type);
    ASSERT_TRUE(type.has_value());
    ASSERT_TRUE(WriteSynthModel(*spec, *type, seed, model_path_, &pool_).ok());
    auto g = gguf::GgufFile::Open(model_path_);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    file_ = std::make_unique<gguf::GgufFile>(std::move(*g));
  }
  Result<LowbitExpertCache::OpenOrBuildResult> Cache() {
    return LowbitExpertCache::OpenOrBuild(&env_, *file_, model_path_, &pool_);
  }
  // A tiered store with the cache attached.
  Result<std::unique_ptr<TieredWeightStore>> Store(uint64_t budget) {
    TIERLM_ASSIGN_OR_RETURN(auto cache, Cache());
    TIERLM_ASSIGN_OR_RETURN(auto store,
                            TieredWeightStore::Open(*file_, &env_, TieredWeightStoreOptions{.budget_bytes = budget}));
    TIERLM_RETURN_IF_ERROR(store->AttachLowbit(std::move(cache.cache)));
    return store;
  }
  uint64_t MinBudget() {
    auto plan = TieredWeightStore::Plan(*file_, TieredWeightStoreOptions{.budget_bytes = 1ull << 40});
    EXPECT_TRUE(plan.ok());
    return plan.ok() ? plan->min_budget_bytes : 0;
  }
  std::vector<float> InMemoryLogits(bool one_by_one) {
    auto mem = InMemoryWeightStore::Open(*file_);
    EXPECT_TRUE(mem.ok());
    auto model = LlamaModel::Create(*file_, mem->get());
    EXPECT_TRUE(model.ok());
    std::vector<float> out;
    EXPECT_TRUE(Logits(**model, one_by_one, &pool_, &out).ok());
    return out;
  }

  fs::path dir_;
  std::string model_path_;
  ThreadPool pool_{2};
  io::PosixStorageEnv env_;
  std::unique_ptr<gguf::GgufFile> file_;
};

TEST_P(MoeLowbitModelTest, LowbitAllMatchesReferenceAndKl) {
  auto store = Store(1ull << 30);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  const std::string cache_path = DefaultLowbitCachePath(model_path_);
  nlohmann::json ref, ref_kl;
  ASSERT_TRUE(RunReference("logits", model_path_, cache_path, dir_ / "ref.json", &ref));
  ASSERT_TRUE(RunReference("kl", model_path_, cache_path, dir_ / "kl.json", &ref_kl));
  EXPECT_EQ(ref_kl["n_replaced"].get<int>(), 4 * 3 * 8);  // layers x projections x experts

  auto model = LlamaModel::Create(*file_, store->get());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const int64_t n_vocab = (*model)->hparams().n_vocab;
  ASSERT_EQ(ref["logits"].size(), kTokens.size());
  for (bool one_by_one : {false, true}) {
    SCOPED_TRACE(one_by_one ? "token by token (n == 1)" : "one batch");
    const std::vector<float> exact = InMemoryLogits(one_by_one);
    (*model)->moe_ffn().set_miss_mode(MoeMiss::kLowbitAll);
    std::vector<float> lowbit;
    Status st = Logits(**model, one_by_one, &pool_, &lowbit);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_GT((*model)->moe_ffn().copy_stats().lowbit, 0);
    EXPECT_EQ((*model)->moe_ffn().copy_stats().full, 0);

    const double diff = MaxDiff(lowbit, ref["logits"], n_vocab);
    // The bound is meaningful: the exact model is much farther from the lowbit reference.
    const double exact_diff = MaxDiff(exact, ref["logits"], n_vocab);
    std::printf("[%s %s] max |lowbit-all - ref lowbit| = %.4g (bound %.3g); max |exact - ref lowbit| = %.4g\n",
                GetParam().type, one_by_one ? "decode" : "batch", diff, GetParam().tolerance, exact_diff);
    EXPECT_LE(diff, GetParam().tolerance);
    EXPECT_GT(exact_diff, 5 * GetParam().tolerance);

    // KL(exact || lowbit-all) per position: tierlm's from its own logits vs the reference's.
    const std::vector<double> kl = KlPerPosition(exact, lowbit, n_vocab);
    const auto ref_values = ref_kl["kl"].get<std::vector<double>>();
    ASSERT_EQ(kl.size(), ref_values.size());
    double mean = 0;
    for (size_t p = 0; p < kl.size(); ++p) {
      EXPECT_NEAR(kl[p], ref_values[p], 0.1 * ref_values[p] + 1e-3) << "position " << p;
      mean += kl[p] / kl.size();
    }
    std::printf("[%s %s] mean KL tierlm %.5g, reference %.5g; max KL reference %.5g; top-1 agreement ref %.3f\n",
                GetParam().type, one_by_one ? "decode" : "batch", mean, ref_kl["mean_kl"].get<double>(),
                ref_kl["max_kl"].get<double>(), ref_kl["top1_agree"].get<double>());
    EXPECT_NEAR(mean, ref_kl["mean_kl"].get<double>(), 0.05 * ref_kl["mean_kl"].get<double>() + 1e-4);
    EXPECT_GT(ref_kl["mean_kl"].get<double>(), 1e-3);  // the fallback does cost accuracy
    (*model)->moe_ffn().set_miss_mode(MoeMiss::kExact);
  }
}

// Type, and the max |logit| difference allowed against the reference's lowbit model:
// measured 2-3x below (activation rounding of the quantized matmuls only).
INSTANTIATE_TEST_SUITE_P(Types, MoeLowbitModelTest,
                         ::testing::Values(Case{"q4_0", 7, 0.15}, Case{"q8_0", 11, 0.15}, Case{"f32", 7, 0.06}),
                         [](const auto& info) { return std::string(info.param.type); });

class MoeLowbitModeTest : public MoeLowbitModelTest {};

TEST_P(MoeLowbitModeTest, ExactOnAStreamingBudgetIsBitIdenticalAndLowbitModesRun) {
  const uint64_t min_budget = MinBudget();
  ASSERT_GT(min_budget, 0u);
  for (bool one_by_one : {false, true}) {
    SCOPED_TRACE(one_by_one ? "token by token (n == 1)" : "one batch");
    const std::vector<float> want = InMemoryLogits(one_by_one);
    for (uint64_t budget : {min_budget, min_budget + (min_budget >> 1)}) {
      auto store = Store(budget);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      auto model = LlamaModel::Create(*file_, store->get());
      ASSERT_TRUE(model.ok());
      std::vector<float> got;
      Status st = Logits(**model, one_by_one, &pool_, &got);
      ASSERT_TRUE(st.ok()) << st.ToString();
      EXPECT_EQ(got, want) << "budget " << budget;
      EXPECT_EQ((*model)->moe_ffn().copy_stats().lowbit, 0);
    }
    for (MoeMiss mode : {MoeMiss::kLowbit, MoeMiss::kAuto}) {
      auto store = Store(min_budget);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      auto model = LlamaModel::Create(*file_, store->get());
      ASSERT_TRUE(model.ok());
      (*model)->moe_ffn().set_miss_mode(mode);
      std::vector<float> got;
      Status st = Logits(**model, one_by_one, &pool_, &got);
      ASSERT_TRUE(st.ok()) << st.ToString();
      ASSERT_EQ(got.size(), want.size());
      EXPECT_TRUE(AllFinite(got));
      const MoeCopyStats& cs = (*model)->moe_ffn().copy_stats();
      std::printf("[%s mode %d] full %lld, lowbit %lld copies\n", one_by_one ? "decode" : "batch",
                  static_cast<int>(mode), static_cast<long long>(cs.full), static_cast<long long>(cs.lowbit));
      if (mode == MoeMiss::kLowbit) {
        EXPECT_GT(cs.lowbit, 0);
      }
      EXPECT_GT(cs.full + cs.lowbit, 0);
    }
  }
}

TEST_P(MoeLowbitModeTest, CorruptCopyFailsTheForwardPass) {
  std::vector<LowbitEntry> entries;
  std::string cache_path;
  {
    auto r = Cache();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->built);
    entries = r->cache->entries();
    cache_path = r->cache->path();
  }
  // One byte in the data of every layer-0 gate copy: whatever layer 0 routes to is corrupt.
  int flipped = 0;
  for (const auto& e : entries) {
    if (e.name.rfind("blk.0.ffn_gate_exps.weight#", 0) != 0) continue;
    std::fstream f(cache_path, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(e.offset + e.size / 2);
    char c = 0;
    f.seekg(at);
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(at);
    f.write(&c, 1);
    ++flipped;
  }
  ASSERT_EQ(flipped, 8);
  for (bool one_by_one : {false, true}) {
    SCOPED_TRACE(one_by_one ? "token by token (n == 1)" : "one batch");
    auto store = Store(1ull << 30);  // the table is intact: the cache opens
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto model = LlamaModel::Create(*file_, store->get());
    ASSERT_TRUE(model.ok());
    (*model)->moe_ffn().set_miss_mode(MoeMiss::kLowbitAll);
    for (int attempt = 0; attempt < 2; ++attempt) {  // a failed read is not cached as good
      std::vector<float> logits;
      Status st = Logits(**model, one_by_one, &pool_, &logits);
      ASSERT_FALSE(st.ok());
      EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
      EXPECT_NE(st.message().find(cache_path), std::string::npos) << st.message();
      // Forward zero-fills its output before the pass; nothing was computed into it.
      EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float v) { return v == 0.0f; }))
          << "logits from a failed pass";
    }
  }
}

TEST_P(MoeLowbitModeTest, StaleCacheIsRebuiltAndRejectedByTheReference) {
  auto r = Cache();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->built);
  r->cache.reset();
  const std::string cache_path = DefaultLowbitCachePath(model_path_);
  const fs::path old_cache = dir_ / "old.tierlm-lowbit";
  fs::copy_file(cache_path, old_cache);
  WriteModel(GetParam().seed + 1);  // same shapes, other weights: only size/mtime/header identify it
  if (HasFatalFailure()) return;
  // The reference's own reader refuses the stale copy.
  nlohmann::json unused;
  std::string log;
  EXPECT_FALSE(RunReference("logits", model_path_, old_cache.string(), dir_ / "stale.json", &unused, &log));
  EXPECT_NE(log.find("stale"), std::string::npos) << log;
  r = Cache();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->built);
  EXPECT_EQ(r->reason.rfind("stale", 0), 0u) << r->reason;
}

INSTANTIATE_TEST_SUITE_P(Q4_0, MoeLowbitModeTest, ::testing::Values(Case{"q4_0", 7, 0.15}),
                         [](const auto& info) { return std::string(info.param.type); });

}  // namespace
}  // namespace tierlm
