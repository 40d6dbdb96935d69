// tierlm against the independent PyTorch reference (tests/reference/gguf_ref.py, its own
// GGUF reader and dequantizers, float32 forward pass) on models written by `tierlm synth`,
// for every architecture and every supported tensor type (the MoE archs qwen2moe, qwen3moe
// and olmoe in f32 and one quantized type each).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_runner.h"
#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "kv/kv_cache.h"
#include "kv/paged_kv_cache.h"
#include "model/batch.h"
#include "model/llama_model.h"
#include "synth/synth_model.h"
#include "test_paths.h"
#include "test_printers.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

struct RefCase {
  const char* preset;
  const char* arch;
  const char* type;
  double tolerance;  // max abs logit difference allowed (activation rounding only)
};

void PrintTo(const RefCase& c, std::ostream* os) { *os << c.preset << "/" << c.arch << "/" << c.type; }

class ReferenceForwardTest : public ::testing::TestWithParam<RefCase> {};

TEST_P(ReferenceForwardTest, LogitsMatchTorch) {
  const RefCase rc = GetParam();
  auto spec = SynthPreset(rc.preset, rc.arch);
  ASSERT_TRUE(spec.has_value());
  spec->n_layer = 2;  // keep the suite fast
  auto type = ParseSynthType(rc.type);
  ASSERT_TRUE(type.has_value());
  const auto dir = testing::ScratchDir(std::string("ref-") + rc.arch + "-" + rc.type);
  const std::string path = (dir / "m.gguf").string();
  ThreadPool pool(2);
  ASSERT_TRUE(WriteSynthModel(*spec, *type, 7, path, &pool).ok());

  const std::vector<int32_t> tokens = {1, 300, 301, 5, 260, 400, 77, 1, 2, 511, 263, 290};
  std::string tok_arg;
  for (int32_t t : tokens) tok_arg += (tok_arg.empty() ? "" : ",") + std::to_string(t);
  const std::string script = (testing::SourceDir() / "tests/reference/gguf_ref.py").string();
  const std::string json_path = (dir / "ref.json").string();
  const testing::CommandResult r = testing::RunShell("/usr/bin/python3 " + testing::Quote(script) + " logits " +
                                                     testing::Quote(path) + " --tokens " + tok_arg + " --out " +
                                                     testing::Quote(json_path));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(json_path);
  const nlohmann::json ref = nlohmann::json::parse(in);

  auto file = gguf::GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto store = InMemoryWeightStore::Open(*file);
  ASSERT_TRUE(store.ok());
  auto model = LlamaModel::Create(*file, store->get());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const int64_t n_vocab = (*model)->hparams().n_vocab;

  // Prefill in one batch, the same tokens again one decode step at a time, and through the
  // paged KV cache with f32 keys and values (half the prompt in one batch, then decode).
  for (int mode : {0, 1, 2}) {
    const bool one_by_one = mode == 1;
    SCOPED_TRACE(mode == 0 ? "one batch" : mode == 1 ? "token by token" : "paged f32 KV");
    auto kv = KvCache::Create((*model)->kv_shape(), 64);
    ASSERT_TRUE(kv.ok());
    std::vector<float> logits;
    if (mode == 2) {
      const ModelHParams& hp = (*model)->hparams();
      kv::PagedKvOptions o{hp.n_layer, hp.n_head_kv, hp.head_dim, kv::KvFormat{GgmlType::kF32, GgmlType::kF32, 4}, 8, 1};
      auto cache = kv::PagedKvCache::Create(o);
      ASSERT_TRUE(cache.ok()) << cache.status().ToString();
      const size_t half = tokens.size() / 2;
      for (size_t begin = 0; begin < tokens.size(); begin = begin == 0 ? half : begin + 1) {
        const size_t end = begin == 0 ? half : begin + 1;
        const std::vector<int32_t> chunk(tokens.begin() + begin, tokens.begin() + end);
        ASSERT_TRUE((*cache)->AddTokens(3, chunk).ok());
        Batch b;
        for (size_t i = begin; i < end; ++i) b.Add(tokens[i], static_cast<int64_t>(i), 3, true);
        std::vector<float> part;
        const Status st = (*model)->Forward(b, **cache, &part, &pool);
        ASSERT_TRUE(st.ok()) << st.ToString();
        logits.insert(logits.end(), part.begin(), part.end());
      }
    } else if (one_by_one) {
      std::vector<float> step;
      for (int32_t t : tokens) {
        const int32_t one[1] = {t};
        ASSERT_TRUE((*model)->Forward(one, *kv, false, &step, &pool).ok());
        logits.insert(logits.end(), step.begin(), step.end());
      }
    } else {
      ASSERT_TRUE((*model)->Forward(tokens, *kv, true, &logits, &pool).ok());
    }
    const auto& rows = ref["logits"];
    ASSERT_EQ(rows.size(), tokens.size());
    double max_diff = 0, max_abs = 0;
    for (size_t p = 0; p < tokens.size(); ++p) {
      const auto row = rows[p].get<std::vector<double>>();
      ASSERT_EQ(static_cast<int64_t>(row.size()), n_vocab);
      for (int64_t v = 0; v < n_vocab; ++v) {
        max_diff = std::max(max_diff, std::fabs(logits[p * n_vocab + v] - row[v]));
        max_abs = std::max(max_abs, std::fabs(row[v]));
      }
    }
    EXPECT_GT(max_abs, 0.5) << "reference logits are degenerate";
    EXPECT_LE(max_diff, rc.tolerance);
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    SynthModels, ReferenceForwardTest,
    ::testing::Values(RefCase{"tiny", "llama", "f32", 2e-3}, RefCase{"tiny", "llama", "f16", 1e-2},
                      RefCase{"tiny", "llama", "bf16", 4e-2}, RefCase{"tiny", "llama", "q8_0", 1e-1},
                      RefCase{"tiny", "llama", "q4_0", 1.5e-1}, RefCase{"tiny", "llama", "q4_k_m", 1.5e-1},
                      RefCase{"qwen2-tiny", "qwen2", "f32", 2e-3}, RefCase{"qwen2-tiny", "qwen2", "f16", 1e-2},
                      RefCase{"qwen2-tiny", "qwen2", "bf16", 4e-2}, RefCase{"qwen2-tiny", "qwen2", "q8_0", 1e-1},
                      RefCase{"qwen2-tiny", "qwen2", "q4_0", 1.5e-1},
                      RefCase{"qwen2-tiny", "qwen2", "q4_k_m", 1.5e-1}, RefCase{"moe-tiny", "llama", "f32", 2e-3},
                      RefCase{"tiny-rope-freqs", "llama", "f32", 2e-3},
                      RefCase{"moe-tiny", "llama", "f16", 1e-2}, RefCase{"qwen3moe-tiny", "qwen3moe", "f32", 2e-3},
                      RefCase{"qwen3moe-tiny", "qwen3moe", "q8_0", 1e-1},
                      RefCase{"qwen2moe-tiny", "qwen2moe", "f32", 2e-3},
                      RefCase{"qwen2moe-tiny", "qwen2moe", "q4_0", 1.5e-1}, RefCase{"olmoe-tiny", "olmoe", "f32", 2e-3},
                      RefCase{"olmoe-tiny", "olmoe", "q4_k_m", 1.5e-1}),
    [](const auto& info) {
      std::string n = std::string(info.param.preset) + "_" + info.param.type;
      return testing::CaseName(n);
    });

}  // namespace
}  // namespace tierlm
