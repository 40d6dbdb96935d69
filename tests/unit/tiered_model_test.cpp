// The model running on the tiered store: exact logits under a small budget, and an I/O
// fault mid-stream ends that forward pass with an error naming the tensor and offset;
// once the fault clears the same engine computes exactly again.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "io/fault_injection_env.h"
#include "io/posix_storage_env.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"
#include "synth/synth_model.h"
#include "test_paths.h"
#include "tiers/tiered_weight_store.h"

namespace tierlm {
namespace {

TEST(TieredModelTest, ExactUnderBudgetAndRecoversFromIoFault) {
  const auto dir = testing::ScratchDir("tiered-model");
  const std::string path = (dir / "m.gguf").string();
  auto spec = SynthPreset("tiny", "llama");
  ThreadPool pool(2);
  ASSERT_TRUE(WriteSynthModel(*spec, SynthType::kQ8_0, 5, path, &pool).ok());
  auto file = gguf::GgufFile::Open(path);
  ASSERT_TRUE(file.ok());
  const std::vector<int32_t> tokens = {1, 300, 301, 302, 303, 304};

  auto logits_with = [&](WeightStore* store, std::vector<float>* out) -> Status {
    TIERLM_ASSIGN_OR_RETURN(auto model, LlamaModel::Create(*file, store));
    TIERLM_ASSIGN_OR_RETURN(auto kv, KvCache::Create(model->kv_shape(), 32));
    return model->Forward(tokens, kv, /*all_logits=*/true, out, &pool);
  };

  auto mem = InMemoryWeightStore::Open(*file);
  ASSERT_TRUE(mem.ok());
  std::vector<float> want;
  ASSERT_TRUE(logits_with(mem->get(), &want).ok());

  io::PosixStorageEnv posix;
  io::FaultInjectionEnv faulty(&posix);
  TieredWeightStoreOptions opt;
  auto plan = TieredWeightStore::Plan(*file, TieredWeightStoreOptions{.budget_bytes = 1ull << 40});
  ASSERT_TRUE(plan.ok());
  opt.budget_bytes = plan->min_budget_bytes;  // the least that runs: most tensors stream
  auto store = TieredWeightStore::Open(*file, &faulty, opt);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_GT((*store)->placement().n_streamed, 0);

  std::vector<float> got;
  ASSERT_TRUE(logits_with(store->get(), &got).ok());
  EXPECT_EQ(got, want) << "tiered logits must be bit-identical to in-memory ones";

  // Fail every read of the middle of one streamed tensor (its edges share 4 KiB blocks
  // with its neighbours, whose aligned reads would hit the fault first).
  const gguf::TensorInfo* victim = file->FindTensor("blk.2.ffn_up.weight");
  ASSERT_NE(victim, nullptr);
  ASSERT_GT(victim->size_bytes, 3u * 4096);
  io::FaultSpec spec_fault;
  spec_fault.fail_begin = (victim->file_offset + 8191) / 4096 * 4096;
  spec_fault.fail_end = spec_fault.fail_begin + 4096;
  faulty.SetFaults(spec_fault);
  Status st = logits_with(store->get(), &got);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("blk.2.ffn_up.weight"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("offset"), std::string::npos) << st.ToString();

  faulty.ClearFaults();
  ASSERT_TRUE(logits_with(store->get(), &got).ok());
  EXPECT_EQ(got, want);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
