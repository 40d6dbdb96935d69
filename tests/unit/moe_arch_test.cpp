// The MoE architectures qwen2moe, qwen3moe and olmoe: hyper-parameters and tensors as the
// loader reads them, clear errors for broken files, routing weights per architecture,
// gate-ahead and traces on every MoE arch, and routing in synthetic models that depends on
// the token (so benchmarks on them see realistic expert traffic).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"
#include "moe/routing_trace.h"
#include "synth/synth_model.h"
#include "test_paths.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

// Writes a synth preset (f32, fixed seed) with n_layer layers into dir; returns its path.
std::string WritePreset(const std::filesystem::path& dir, const std::string& preset, int64_t n_layer,
                        SynthType type = SynthType::kF32, std::function<void(SynthSpec&)> edit = nullptr) {
  auto spec = SynthPreset(preset, "");
  EXPECT_TRUE(spec.has_value()) << preset;
  spec->n_layer = n_layer;
  if (edit) edit(*spec);
  const std::string path = (dir / (preset + ".gguf")).string();
  ThreadPool pool(2);
  const Status st = WriteSynthModel(*spec, type, 7, path, &pool);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return path;
}

TEST(MoeArch, HParamsOfEachArchitecture) {
  const auto dir = testing::ScratchDir("moe-arch-hp");
  struct Want {
    const char* preset;
    Arch arch;
    int64_t head_dim, q_dim, n_expert, n_used, n_ff_exp, n_ff_shexp;
    bool norm;
    QkNorm qk;
  };
  for (const Want& w : {Want{"qwen3moe-tiny", Arch::kQwen3Moe, 64, 512, 16, 4, 128, 0, true, QkNorm::kPerHead},
                        Want{"qwen2moe-tiny", Arch::kQwen2Moe, 32, 256, 8, 2, 128, 256, false, QkNorm::kNone},
                        Want{"olmoe-tiny", Arch::kOlmoe, 32, 256, 16, 4, 128, 0, false, QkNorm::kWhole}}) {
    SCOPED_TRACE(w.preset);
    const std::string path = WritePreset(dir, w.preset, 2);
    auto file = gguf::GgufFile::Open(path);
    ASSERT_TRUE(file.ok());
    auto hp = ModelHParams::FromGguf(*file);
    ASSERT_TRUE(hp.ok()) << hp.status().ToString();
    EXPECT_EQ(hp->arch, w.arch);
    EXPECT_EQ(hp->head_dim, w.head_dim);
    EXPECT_EQ(hp->q_dim(), w.q_dim);
    EXPECT_EQ(hp->n_expert, w.n_expert);
    EXPECT_EQ(hp->n_expert_used, w.n_used);
    EXPECT_EQ(hp->n_ff_exp, w.n_ff_exp);
    EXPECT_EQ(hp->n_ff_shexp, w.n_ff_shexp);
    EXPECT_EQ(hp->expert_weights_norm, w.norm);
    EXPECT_EQ(hp->qk_norm, w.qk);
    EXPECT_EQ(hp->rope_style, RopeStyle::kNeox);
    EXPECT_EQ(hp->qkv_bias, w.arch == Arch::kQwen2Moe);
    auto model = LlamaModel::Create(*file, nullptr);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
  }
  std::filesystem::remove_all(dir);
}

TEST(MoeArch, LargePresetsHaveTheRealShapes) {
  auto q3 = SynthPreset("qwen3-30b-a3b", "");
  ASSERT_TRUE(q3);
  EXPECT_EQ(q3->arch, "qwen3moe");
  EXPECT_EQ(q3->n_layer, 48);
  EXPECT_EQ(q3->n_embd, 2048);
  EXPECT_EQ(q3->n_head * q3->head_dim, 4096);  // q_dim != n_embd
  EXPECT_EQ(q3->n_head_kv, 4);
  EXPECT_EQ(q3->n_expert, 128);
  EXPECT_EQ(q3->n_expert_used, 8);
  EXPECT_EQ(q3->n_ff_exp, 768);
  EXPECT_EQ(q3->n_vocab, 151936);
  auto ol = SynthPreset("olmoe-1b-7b", "");
  ASSERT_TRUE(ol);
  EXPECT_EQ(ol->arch, "olmoe");
  EXPECT_EQ(ol->n_expert, 64);
  EXPECT_EQ(ol->n_ff, 1024);
  EXPECT_EQ(ol->n_vocab, 50304);
  auto q2 = SynthPreset("qwen1.5-moe-a2.7b", "");
  ASSERT_TRUE(q2);
  EXPECT_EQ(q2->arch, "qwen2moe");
  EXPECT_EQ(q2->n_expert, 60);
  EXPECT_EQ(q2->n_expert_used, 4);
  EXPECT_EQ(q2->n_ff_exp, 1408);
  EXPECT_EQ(q2->n_ff_shexp, 5632);
  for (const char* name : {"qwen3-30b-a3b", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "mixtral-8x7b"})
    EXPECT_LT(SynthPreset(name, "")->residual_scale, 0.5f) << name;
}

// Copies a GGUF file's metadata and tensor directory (tensor data zeroed: the loader checks
// names and shapes without reading data) with edits, to make broken files.
struct Edits {
  std::map<std::string, std::optional<gguf::Value>> keys;             // nullopt: drop the key
  std::map<std::string, std::optional<std::vector<int64_t>>> tensors;  // nullopt: drop the tensor
};

Status Rewrite(const std::string& from, const std::string& to, const Edits& e) {
  TIERLM_ASSIGN_OR_RETURN(gguf::GgufFile f, gguf::GgufFile::Open(from));
  gguf::GgufWriter w;
  for (const auto& kv : f.metadata()) {
    auto it = e.keys.find(kv.key);
    if (it == e.keys.end()) w.Set(kv.key, kv.value);
    else if (it->second) w.Set(kv.key, *it->second);
  }
  for (const auto& [key, value] : e.keys)
    if (value && !f.Find(key)) w.Set(key, *value);
  for (const auto& t : f.tensors()) {
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    auto it = e.tensors.find(t.name);
    if (it != e.tensors.end()) {
      if (!it->second) continue;
      ne = *it->second;
    }
    TIERLM_RETURN_IF_ERROR(w.AddTensor(t.name, t.type, ne, [](uint8_t*, uint64_t) { return Status::Ok(); }));
  }
  return w.Write(to);
}

TEST(MoeArch, BrokenFilesFailWithTheKeyOrTensorNamed) {
  const auto dir = testing::ScratchDir("moe-arch-errors");
  const std::string q3 = WritePreset(dir, "qwen3moe-tiny", 2);
  const std::string q2 = WritePreset(dir, "qwen2moe-tiny", 2);
  const std::string ol = WritePreset(dir, "olmoe-tiny", 2);
  struct Case {
    const char* what;
    std::string base;
    Edits edits;
    std::string message;  // expected substring
  };
  const std::vector<Case> cases = {
      {"top-k above the expert count", q3, {{{"qwen3moe.expert_used_count", gguf::Value::U32(17)}}, {}},
       "qwen3moe.expert_used_count = 17 exceeds qwen3moe.expert_count = 16"},
      {"no experts", q3, {{{"qwen3moe.expert_count", std::nullopt}}, {}},
       "architecture 'qwen3moe' needs experts but qwen3moe.expert_count is missing or 0"},
      {"no top-k", q2, {{{"qwen2moe.expert_used_count", std::nullopt}}, {}},
       "qwen2moe.expert_count is 8 but qwen2moe.expert_used_count is missing or 0"},
      {"expert width key disagrees with the tensors", q3,
       {{{"qwen3moe.expert_feed_forward_length", gguf::Value::U32(96)}}, {}},
       "tensor 'blk.0.ffn_gate_exps.weight' has shape [256, 128, 16], expected [256, 96, 16]"},
      {"missing expert tensor", q3, {{}, {{"blk.1.ffn_up_exps.weight", std::nullopt}}},
       "required tensor 'blk.1.ffn_up_exps.weight' is missing"},
      {"unstacked expert tensor", q3, {{}, {{"blk.0.ffn_down_exps.weight", std::vector<int64_t>{128, 256}}}},
       "tensor 'blk.0.ffn_down_exps.weight' has shape [128, 256], expected [128, 256, 16]"},
      {"wrong expert count in a stack", ol, {{}, {{"blk.1.ffn_gate_exps.weight", std::vector<int64_t>{256, 128, 8}}}},
       "tensor 'blk.1.ffn_gate_exps.weight' has shape [256, 128, 8], expected [256, 128, 16]"},
      {"router of the wrong width", q2, {{}, {{"blk.0.ffn_gate_inp.weight", std::vector<int64_t>{256, 6}}}},
       "tensor 'blk.0.ffn_gate_inp.weight' has shape [256, 6], expected [256, 8]"},
      {"missing per-head q norm", q3, {{}, {{"blk.1.attn_q_norm.weight", std::nullopt}}},
       "required tensor 'blk.1.attn_q_norm.weight' is missing"},
      {"whole-projection norm in a per-head arch", q3,
       {{}, {{"blk.0.attn_k_norm.weight", std::vector<int64_t>{128}}}},
       "tensor 'blk.0.attn_k_norm.weight' has shape [128], expected [64]"},
      {"per-head norm in olmoe", ol, {{}, {{"blk.0.attn_q_norm.weight", std::vector<int64_t>{32}}}},
       "tensor 'blk.0.attn_q_norm.weight' has shape [32], expected [256]"},
      {"missing shared expert gate", q2, {{}, {{"blk.1.ffn_gate_inp_shexp.weight", std::nullopt}}},
       "required tensor 'blk.1.ffn_gate_inp_shexp.weight' is missing"},
      {"shared expert width key disagrees", q2,
       {{{"qwen2moe.expert_shared_feed_forward_length", gguf::Value::U32(512)}}, {}},
       "tensor 'blk.0.ffn_gate_shexp.weight' has shape [256, 256], expected [256, 512]"},
      {"missing qwen2moe bias", q2, {{}, {{"blk.0.attn_v.bias", std::nullopt}}},
       "required tensor 'blk.0.attn_v.bias' is missing"},
      {"unknown architecture", q3, {{{"general.architecture", gguf::Value::Str("qwen9moe")}}, {}},
       "architecture 'qwen9moe' is not supported (supported: llama, qwen2, qwen2moe, qwen3moe, olmoe)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string path = (dir / "broken.gguf").string();
    ASSERT_TRUE(Rewrite(c.base, path, c.edits).ok());
    auto file = gguf::GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    auto model = LlamaModel::Create(*file, nullptr);
    ASSERT_FALSE(model.ok());
    EXPECT_NE(model.status().message().find(c.message), std::string::npos) << model.status().message();
    EXPECT_NE(model.status().message().find("broken.gguf"), std::string::npos) << model.status().message();
  }
  std::filesystem::remove_all(dir);
}

TEST(MoeArch, SynthRefusesInconsistentSpecs) {
  const auto dir = testing::ScratchDir("moe-arch-synth-errors");
  const std::string path = (dir / "x.gguf").string();
  auto try_write = [&](const char* preset, std::function<void(SynthSpec&)> edit) {
    auto spec = SynthPreset(preset, "");
    edit(*spec);
    return WriteSynthModel(*spec, SynthType::kF32, 1, path, nullptr);
  };
  EXPECT_FALSE(try_write("qwen3moe-tiny", [](SynthSpec& s) { s.n_expert = 0; }).ok());
  EXPECT_FALSE(try_write("qwen3moe-tiny", [](SynthSpec& s) { s.n_expert_used = 17; }).ok());
  EXPECT_FALSE(try_write("olmoe-tiny", [](SynthSpec& s) { s.n_head_kv = 4; }).ok());
  EXPECT_FALSE(try_write("qwen2moe-tiny", [](SynthSpec& s) { s.tied_output = true; }).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
  std::filesystem::remove_all(dir);
}

TEST(MoeArch, RouteRenormalizesOnlyWhenAsked) {
  const float logits[4] = {2.0f, 1.0f, 0.0f, -1.0f};
  const Routing norm = Route(logits, 1, 4, 2, true);
  const Routing raw = Route(logits, 1, 4, 2, false);
  ASSERT_EQ(norm.expert, (std::vector<int32_t>{0, 1}));
  ASSERT_EQ(raw.expert, (std::vector<int32_t>{0, 1}));
  const double z = std::exp(2.0) + std::exp(1.0) + 1.0 + std::exp(-1.0);
  EXPECT_NEAR(norm.weight[0], std::exp(2.0) / (std::exp(2.0) + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(norm.weight[1], std::exp(1.0) / (std::exp(2.0) + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(raw.weight[0], std::exp(2.0) / z, 1e-6);  // plain softmax probabilities
  EXPECT_NEAR(raw.weight[1], std::exp(1.0) / z, 1e-6);
}

// Routing traces and gate-ahead on every MoE arch: the API works the same, routing weights
// follow the arch's normalization, and a hint never changes the logits.
TEST(MoeArch, TraceAndGateAheadOnEveryArch) {
  const auto dir = testing::ScratchDir("moe-arch-trace");
  ThreadPool pool(2);
  for (const char* preset : {"qwen3moe-tiny", "qwen2moe-tiny", "olmoe-tiny"}) {
    SCOPED_TRACE(preset);
    const std::string path = WritePreset(dir, preset, 3);
    auto file = gguf::GgufFile::Open(path);
    ASSERT_TRUE(file.ok());
    auto store = InMemoryWeightStore::Open(*file);
    ASSERT_TRUE(store.ok());
    auto model = LlamaModel::Create(*file, store->get());
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ModelHParams& hp = (*model)->hparams();
    const std::vector<int32_t> tokens = {1, 300, 301, 302, 303, 304};
    auto run = [&](bool gate_ahead, RoutingTrace* trace, std::vector<float>* logits) -> Status {
      (*model)->moe_ffn().set_gate_ahead(gate_ahead);
      (*model)->moe_ffn().set_trace(trace);
      TIERLM_ASSIGN_OR_RETURN(auto kv, KvCache::Create(KvShape{hp.n_layer, hp.n_head_kv, hp.head_dim}, 16));
      TIERLM_RETURN_IF_ERROR((*model)->Forward(tokens, kv, true, logits, &pool));
      (*model)->moe_ffn().set_trace(nullptr);
      (*model)->moe_ffn().set_gate_ahead(false);
      return Status::Ok();
    };
    RoutingTrace trace(static_cast<int32_t>(hp.n_layer), static_cast<int32_t>(hp.n_expert),
                       static_cast<int32_t>(hp.n_expert_used));
    std::vector<float> plain, ahead;
    ASSERT_TRUE(run(false, &trace, &plain).ok());
    ASSERT_TRUE(run(true, nullptr, &ahead).ok());
    EXPECT_EQ(plain, ahead);
    EXPECT_GT((*model)->moe_ffn().gate_ahead_stats().predicted, 0);
    ASSERT_EQ(trace.n_tokens(), static_cast<int64_t>(tokens.size()));
    for (int64_t t = 0; t < trace.n_tokens(); ++t)
      for (int32_t l = 0; l < trace.n_layer(); ++l) {
        double sum = 0;
        for (int32_t k = 0; k < trace.n_used(); ++k) sum += trace.weight(t, l, k);
        if (hp.expert_weights_norm) EXPECT_NEAR(sum, 1.0, 1e-5);
        else EXPECT_LT(sum, 1.0 - 1e-3);  // softmax mass of the kept experts only
      }
  }
  std::filesystem::remove_all(dir);
}

// Expert sets per (token, layer) from a trace.
std::set<int32_t> Experts(const RoutingTrace& tr, int64_t t, int32_t l) {
  std::set<int32_t> s;
  for (int32_t k = 0; k < tr.n_used(); ++k) s.insert(tr.expert(t, l, k));
  return s;
}

double Overlap(const std::set<int32_t>& a, const std::set<int32_t>& b) {
  int common = 0;
  for (int32_t e : a) common += b.count(e);
  return static_cast<double>(common) / a.size();
}

struct RoutingStats {
  double chance = 0;            // n_used / n_expert
  double consecutive = 0;       // mean expert overlap of consecutive (random) tokens
  double consecutive_last = 0;  // the same in the deepest quarter of the layers
  double same_token = 0;        // overlap of a token with the same token later on
  double distinct = 0;          // share of the experts used per layer
};

// Runs 96 random tokens, then the first 32 of them again, in one sequence.
RoutingStats MeasureRouting(const std::string& path) {
  RoutingStats r;
  auto file = gguf::GgufFile::Open(path);
  EXPECT_TRUE(file.ok());
  auto store = InMemoryWeightStore::Open(*file);
  EXPECT_TRUE(store.ok());
  auto model = LlamaModel::Create(*file, store->get());
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return r;
  const ModelHParams& hp = (*model)->hparams();
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> pick(3, static_cast<int32_t>(hp.n_vocab) - 1);
  std::vector<int32_t> tokens(96);
  for (auto& t : tokens) t = pick(rng);
  tokens.insert(tokens.end(), tokens.begin(), tokens.begin() + 32);
  RoutingTrace trace(static_cast<int32_t>(hp.n_layer), static_cast<int32_t>(hp.n_expert),
                     static_cast<int32_t>(hp.n_expert_used));
  (*model)->moe_ffn().set_trace(&trace);
  auto kv = KvCache::Create(KvShape{hp.n_layer, hp.n_head_kv, hp.head_dim}, static_cast<int64_t>(tokens.size()));
  EXPECT_TRUE(kv.ok());
  std::vector<float> logits;
  ThreadPool pool(2);
  EXPECT_TRUE((*model)->Forward(tokens, *kv, false, &logits, &pool).ok());
  (*model)->moe_ffn().set_trace(nullptr);

  r.chance = static_cast<double>(hp.n_expert_used) / hp.n_expert;
  const int32_t L = trace.n_layer();
  int n_last_layers = 0;
  for (int32_t l = 0; l < L; ++l) {
    const bool last = l >= L - std::max(1, L / 4);
    n_last_layers += last;
    std::set<int32_t> used;
    for (int64_t t = 0; t < 96; ++t) {
      const auto s = Experts(trace, t, l);
      used.insert(s.begin(), s.end());
      if (t + 1 < 96) {
        const double o = Overlap(s, Experts(trace, t + 1, l)) / 95.0;
        r.consecutive += o / L;
        if (last) r.consecutive_last += o;
      }
      if (t < 32) r.same_token += Overlap(s, Experts(trace, 96 + t, l)) / (32.0 * L);
    }
    r.distinct += static_cast<double>(used.size()) / hp.n_expert / L;
  }
  r.consecutive_last /= n_last_layers;
  std::printf("%s (%d layers): consecutive overlap %.3f (deepest quarter %.3f, chance %.3f), same token %.3f, "
              "experts used per layer %.2f\n",
              std::filesystem::path(path).filename().c_str(), static_cast<int>(L), r.consecutive,
              r.consecutive_last, r.chance, r.same_token, r.distinct);
  return r;
}

// Random deep networks collapse: every token's hidden state ends up alike and the router
// picks the same experts for every token, which would make expert-cache benchmarks on
// synthetic models meaningless. The MoE presets scale down the residual branches so the
// hidden state stays close to the token's embedding. At the real depth of each preset,
// random tokens must route like independent draws (consecutive tokens share about
// n_used / n_expert of their experts, almost every expert is used in every layer) while the
// same token routes (almost) the same way wherever it appears.
TEST(MoeArch, SynthRoutingDependsOnTheToken) {
  const auto dir = testing::ScratchDir("moe-arch-routing");
  struct Case {
    const char* preset;
    int64_t depth;  // the real model's layer count
  };
  for (const Case& c : {Case{"qwen3moe-tiny", 48}, Case{"olmoe-tiny", 16}, Case{"qwen2moe-tiny", 24}}) {
    SCOPED_TRACE(c.preset);
    const RoutingStats r = MeasureRouting(WritePreset(dir, c.preset, c.depth, SynthType::kQ8_0));
    EXPECT_LT(r.consecutive, r.chance + 0.1);
    EXPECT_LT(r.consecutive_last, r.chance + 0.15);
    EXPECT_GT(r.distinct, 0.9);
    EXPECT_GT(r.same_token, 0.8);
  }
  // The measurement does see collapse: without the scaling, the 48-layer model's deep
  // layers route consecutive random tokens to largely the same experts.
  const RoutingStats collapsed = MeasureRouting(
      WritePreset(dir, "qwen3moe-tiny", 48, SynthType::kQ8_0, [](SynthSpec& s) { s.residual_scale = 1.0f; }));
  EXPECT_GT(collapsed.consecutive_last, collapsed.chance + 0.25);
  EXPECT_LT(collapsed.same_token, 0.8);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
