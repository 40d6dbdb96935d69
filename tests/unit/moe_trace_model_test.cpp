// Routing traces from a real forward pass on a synthetic MoE model (moe-tiny) (8 experts, top-2,
// 4 layers), and the trace / moe-report commands end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <span>
#include <string>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"
#include "moe/routing_trace.h"
#include "test_paths.h"
#include "io/posix_storage_env.h"
#include "tiers/policy_factory.h"
#include "tiers/tiered_weight_store.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

std::string MoeModel() { return testing::SynthModel("moe-tiny", "q8_0").string(); }

TEST(MoeTraceModel, ForwardRecordsEveryLayerAndLeavesLogitsAlone) {
  auto file = gguf::GgufFile::Open(MoeModel());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto store = InMemoryWeightStore::Open(*file);
  ASSERT_TRUE(store.ok());
  auto model = LlamaModel::Create(*file, store->get());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelHParams& hp = (*model)->hparams();
  ASSERT_EQ(hp.n_expert, 8);
  ASSERT_EQ(hp.n_expert_used, 2);
  ThreadPool pool(2);
  const std::vector<int32_t> prompt = {1, 20, 21, 22, 23};
  const std::vector<int32_t> next = {24, 25};

  auto run = [&](RoutingTrace* trace, std::vector<float>* last) -> Status {
    (*model)->moe_ffn().set_trace(trace);
    TIERLM_ASSIGN_OR_RETURN(auto kv, KvCache::Create(KvShape{hp.n_layer, hp.n_head_kv, hp.head_dim}, 16));
    std::vector<float> logits;
    TIERLM_RETURN_IF_ERROR((*model)->Forward(prompt, kv, false, &logits, &pool));
    for (int32_t tok : next) TIERLM_RETURN_IF_ERROR((*model)->Forward({&tok, 1}, kv, false, &logits, &pool));
    (*model)->moe_ffn().set_trace(nullptr);
    *last = logits;
    return Status::Ok();
  };
  RoutingTrace trace(static_cast<int32_t>(hp.n_layer), 8, 2);
  std::vector<float> traced, plain;
  ASSERT_TRUE(run(&trace, &traced).ok());
  ASSERT_TRUE(run(nullptr, &plain).ok());
  EXPECT_EQ(traced, plain);
  ASSERT_EQ(trace.n_tokens(), 7);  // the prompt batch, then two decode steps
  for (int64_t t = 0; t < trace.n_tokens(); ++t)
    for (int32_t l = 0; l < trace.n_layer(); ++l) {
      EXPECT_NE(trace.expert(t, l, 0), trace.expert(t, l, 1));
      EXPECT_GE(trace.weight(t, l, 0), trace.weight(t, l, 1));  // top-k order
      EXPECT_NEAR(trace.weight(t, l, 0) + trace.weight(t, l, 1), 1.0f, 1e-5f);
    }
  // The last layer's routing of the last token is what the MoE block used last.
  std::set<int32_t> chosen;
  for (int32_t l = 0; l < trace.n_layer(); ++l) chosen.insert(trace.expert(6, l, 0));
  EXPECT_FALSE(chosen.empty());
}

// Serves from an in-memory store and records every Prefetch hint.
class RecordingStore : public WeightStore {
 public:
  explicit RecordingStore(WeightStore* inner) : inner_(inner) {}
  Result<TensorPin> Acquire(const gguf::TensorInfo& t) override { return inner_->Acquire(t); }
  void Prefetch(std::span<const gguf::TensorInfo* const> upcoming) override {
    std::vector<std::string> names;
    for (const auto* t : upcoming) names.push_back(t->name);
    hints.push_back(names);
  }
  WeightStoreStats Stats() const override { return inner_->Stats(); }
  std::vector<std::vector<std::string>> hints;

 private:
  WeightStore* inner_;
};

TEST(MoeTraceModel, GateAheadPrefetchesTheNextLayersPredictedExperts) {
  auto file = gguf::GgufFile::Open(MoeModel());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto mem = InMemoryWeightStore::Open(*file);
  ASSERT_TRUE(mem.ok());
  RecordingStore store(mem->get());
  auto model = LlamaModel::Create(*file, &store);
  ASSERT_TRUE(model.ok());
  const ModelHParams& hp = (*model)->hparams();
  ThreadPool pool(2);
  const std::vector<int32_t> tokens = {1, 30, 31, 32};
  auto logits = [&](bool gate_ahead, std::vector<float>* out) -> Status {
    (*model)->moe_ffn().set_gate_ahead(gate_ahead);
    TIERLM_ASSIGN_OR_RETURN(auto kv, KvCache::Create(KvShape{hp.n_layer, hp.n_head_kv, hp.head_dim}, 8));
    TIERLM_RETURN_IF_ERROR((*model)->Forward(tokens, kv, true, out, &pool));
    const int32_t next = 33;
    std::vector<float> one;
    TIERLM_RETURN_IF_ERROR((*model)->Forward({&next, 1}, kv, false, &one, &pool));
    out->insert(out->end(), one.begin(), one.end());
    return Status::Ok();
  };
  std::vector<float> plain, ahead;
  ASSERT_TRUE(logits(false, &plain).ok());
  // Without gate-ahead, each MoE layer hints only its own routed experts, in layer order.
  ASSERT_EQ(store.hints.size(), 2u * 4);  // two forward passes x four MoE layers
  for (size_t i = 0; i < store.hints.size(); ++i) {
    ASSERT_FALSE(store.hints[i].empty());
    for (const auto& name : store.hints[i]) EXPECT_EQ(LayerOfTensorName(name), static_cast<int32_t>(i % 4)) << name;
  }
  store.hints.clear();
  ASSERT_TRUE(logits(true, &ahead).ok());
  EXPECT_EQ(plain, ahead);  // a hint never changes results
  // Keep the gate-ahead hints: layer l hints its own routed experts, then layer l + 1's
  // predicted ones.
  std::vector<std::vector<std::string>> gate_hints;
  for (size_t i = 1; i < store.hints.size(); ++i)
    if (LayerOfTensorName(store.hints[i][0]) == LayerOfTensorName(store.hints[i - 1][0]) + 1)
      gate_hints.push_back(store.hints[i]);
  store.hints = gate_hints;

  // Two forward passes, three layers each with a next MoE layer.
  ASSERT_EQ(store.hints.size(), 6u);
  for (size_t i = 0; i < store.hints.size(); ++i) {
    const std::string layer = "blk." + std::to_string(i % 3 + 1) + ".";
    ASSERT_FALSE(store.hints[i].empty());
    EXPECT_EQ(store.hints[i].size() % 3, 0u);
    for (const auto& name : store.hints[i]) EXPECT_EQ(name.rfind(layer, 0), 0u) << name;
  }
  EXPECT_LE(store.hints[3].size(), 3u * 2);  // the decode step: at most top-2 experts
  const GateAheadStats& st = (*model)->moe_ffn().gate_ahead_stats();
  EXPECT_EQ(st.predicted, (4 + 1) * 3 * 2);  // tokens x scored layers x top-k
  EXPECT_GE(st.correct, 0);
  EXPECT_LE(st.correct, st.predicted);
}

TEST(MoeTraceModel, GateAheadOnATieredStoreKeepsLogitsExact) {
  auto file = gguf::GgufFile::Open(MoeModel());
  ASSERT_TRUE(file.ok());
  auto mem = InMemoryWeightStore::Open(*file);
  ASSERT_TRUE(mem.ok());
  auto plan = TieredWeightStore::Plan(*file, TieredWeightStoreOptions{.budget_bytes = 1ull << 40});
  ASSERT_TRUE(plan.ok());
  io::PosixStorageEnv env;
  auto tiered = TieredWeightStore::Open(*file, &env, TieredWeightStoreOptions{.budget_bytes = plan->min_budget_bytes});
  ASSERT_TRUE(tiered.ok()) << tiered.status().ToString();
  ThreadPool pool(2);
  const std::vector<int32_t> tokens = {1, 40, 41, 42, 43, 44};
  auto run = [&](WeightStore* store, bool gate_ahead, std::vector<float>* out) -> Status {
    TIERLM_ASSIGN_OR_RETURN(auto model, LlamaModel::Create(*file, store));
    model->moe_ffn().set_gate_ahead(gate_ahead);
    TIERLM_ASSIGN_OR_RETURN(auto kv, KvCache::Create(model->kv_shape(), 8));
    for (int32_t tok : tokens) {  // decode-style, one token per step
      std::vector<float> one;
      TIERLM_RETURN_IF_ERROR(model->Forward({&tok, 1}, kv, false, &one, &pool));
      out->insert(out->end(), one.begin(), one.end());
    }
    return Status::Ok();
  };
  std::vector<float> want, got;
  ASSERT_TRUE(run(mem->get(), false, &want).ok());
  {
    Status st = run(tiered->get(), true, &got);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_EQ(got, want);
  EXPECT_GT((*tiered)->residency_stats().per_class[static_cast<int>(EntryClass::kExpert)].prefetches, 0u);
}

TEST(MoeTraceModel, TraceAndReportCommands) {
  const auto dir = testing::ScratchDir("moe-cli");
  const std::string bin = Quote(testing::TierlmBinary());
  const std::string out = (dir / "r.trace").string();
  auto r = RunShell(bin + " trace -m " + Quote(MoeModel()) + " -p 'Once upon a time' -n 6 -t 2 -o " + Quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("gate-ahead"), std::string::npos) << r.output;
  auto trace = RoutingTrace::Load(out);
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  EXPECT_EQ(trace->n_layer(), 4);
  EXPECT_EQ(trace->n_expert(), 8);
  EXPECT_EQ(trace->n_used(), 2);
  EXPECT_GE(trace->n_tokens(), 6);  // prompt tokens and all but the last generated one

  r = RunShell(bin + " moe-report --trace " + Quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* want : {"belady", "lfu-decay", "score", "SRP", "SCH(2k)", "model(2k)", "synthetic locality p = 0.90",
                           "8 = 1x", "32 = 4x (all)", "1 sequence(s)"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  r = RunShell(bin + " moe-report --trace " + Quote(out) + " --json --seg-lengths 2,4 --cache-ratios 1,2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* want : {"\"srp\"", "\"sch\"", "\"sch_model\"", "\"4\": {", "\"2\":", "\"cache_hit_rate\""})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  EXPECT_EQ(r.output.find("gate-ahead"), std::string::npos) << r.output;  // stdout is JSON only

  // Several prompts: one sequence each, in a fresh context.
  const std::string prompts = (dir / "prompts.txt").string();
  std::ofstream(prompts) << "Once upon a time\n\nThe dog\nA cat sat\n";
  const std::string multi = (dir / "m.trace").string();
  r = RunShell(bin + " trace -m " + Quote(MoeModel()) + " -f " + Quote(prompts) + " -n 3 -t 2 -o " + Quote(multi));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("3 sequence(s)"), std::string::npos) << r.output;
  auto many = RoutingTrace::Load(multi);
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  ASSERT_EQ(many->sequences().size(), 3u);
  // The first prompt alone gives the same routing as the first sequence (a fresh context).
  const int64_t first_len = many->sequences()[0].second;
  ASSERT_LE(first_len, trace->n_tokens());
  for (int64_t tok = 0; tok < std::min<int64_t>(first_len, 4); ++tok)
    for (int32_t l = 0; l < 4; ++l)
      for (int32_t k = 0; k < 2; ++k) EXPECT_EQ(many->expert(tok, l, k), trace->expert(tok, l, k)) << tok;
  r = RunShell(bin + " trace -m " + Quote(MoeModel()) + " -f " + Quote(prompts) + " -p hi -o " + Quote(multi));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunShell(bin + " moe-report --trace " + Quote(out) + " --json --plot " + Quote((dir / "p.svg").string()));
  EXPECT_EQ(r.exit_code, 2) << r.output;

  r = RunShell(bin + " moe-report");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = RunShell(bin + " moe-report --trace " + Quote((dir / "missing.trace").string()));
  EXPECT_EQ(r.exit_code, 2) << r.output;  // an I/O error: every error exits 2
  EXPECT_NE(r.output.find("missing.trace"), std::string::npos) << r.output;
  r = RunShell(bin + " trace -m " + Quote(testing::SynthModel("tiny", "q8_0").string()) +
               " -p hi -n 2 -o " + Quote((dir / "x.trace").string()));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no experts"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
