#include "runtime/generator.h"

#include <gtest/gtest.h>

#include "format/gguf_file.h"
#include "test_paths.h"
#include "tiers/weight_store.h"

namespace tierlm {
namespace {

class GeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = gguf::GgufFile::Open((testing::StoriesModel()).string());
    ASSERT_TRUE(f.ok());
    file_ = std::make_unique<gguf::GgufFile>(std::move(*f));
    auto s = InMemoryWeightStore::Open(*file_);
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    auto m = LlamaModel::Create(*file_, store_.get());
    ASSERT_TRUE(m.ok());
    model_ = std::move(*m);
  }
  std::unique_ptr<gguf::GgufFile> file_;
  std::unique_ptr<InMemoryWeightStore> store_;
  std::unique_ptr<LlamaModel> model_;
  ThreadPool pool_{2};
};

TEST_F(GeneratorTest, KvHoldsTheWholeReplyOnlyWithEvalLast) {
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  for (bool eval_last : {false, true}) {
    auto kv = KvCache::Create(model_->kv_shape(), 64);
    ASSERT_TRUE(kv.ok());
    GenerateRequest req;
    req.prompt = prompt;
    req.n_predict = 6;
    req.sampling.temperature = 0;
    req.eval_last = eval_last;
    std::vector<int32_t> got;
    req.on_token = [&](int32_t id) {
      got.push_back(id);
      return true;
    };
    auto stats = Generate(*model_, *kv, &pool_, req);
    ASSERT_TRUE(stats.ok());
    ASSERT_EQ(stats->n_generated, 6);
    EXPECT_EQ(got, (std::vector<int32_t>{432, 383, 286, 261, 376, 298}));  // llama2.c's story
    EXPECT_EQ(kv->n_past(), static_cast<int64_t>(prompt.size()) + (eval_last ? 6 : 5));
  }
}

TEST_F(GeneratorTest, PromptLongerThanContextIsRefusedBeforeEvaluating) {
  auto kv = KvCache::Create(model_->kv_shape(), 4);
  ASSERT_TRUE(kv.ok());
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  GenerateRequest req;
  req.prompt = prompt;
  auto stats = Generate(*model_, *kv, &pool_, req);
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(kv->n_past(), 0);
}

}  // namespace
}  // namespace tierlm
