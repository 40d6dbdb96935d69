// The trained long-context test model (tests/models/longctx.gguf, tools/longctx): its
// trainer tokenizes text exactly as tierlm does, pass-key documents are built as the
// trainer builds them, exact attention retrieves the key across contexts and depths, and a
// sparse mode whose budget covers the context changes nothing.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "eval/kv_eval.h"
#include "eval/passkey_task.h"
#include "runtime/engine.h"
#include "test_paths.h"

namespace tierlm {
namespace {

std::filesystem::path LongctxModel() { return testing::SourceDir() / "tests" / "models" / "longctx.gguf"; }
std::filesystem::path Heldout() { return testing::SourceDir() / "tests" / "models" / "longctx-heldout.txt"; }

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << p;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<Engine> Load() {
  EngineOptions o;
  o.model_path = LongctxModel().string();
  o.n_threads = 2;
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

TEST(LongctxModelTest, TheTrainersTokenizerGivesTierlmsTokens) {
  auto e = Load();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kv().n_ctx(), 4096);
  const std::string cmd = "/usr/bin/python3 " + (testing::SourceDir() / "tools" / "longctx" / "tokenize_lines.py").string() +
                          " " + LongctxModel().string() + " " + Heldout().string();
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::vector<int32_t> python;
  std::array<char, 1 << 16> buf;
  std::string all;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) all.append(buf.data(), n);
  ASSERT_EQ(::pclose(p), 0) << cmd;
  std::stringstream ss(all);
  int64_t id;
  while (ss >> id) python.push_back(static_cast<int32_t>(id));
  const std::vector<int32_t> ours = eval::TokenizeLines(e->tokenizer(), ReadAll(Heldout()));
  ASSERT_GT(ours.size(), 50000u);
  ASSERT_EQ(python.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(python[i], ours[i]) << "token " << i;
}

TEST(LongctxModelTest, PassKeyDocumentsHaveTheirLengthNeedleAndAnswer) {
  auto e = Load();
  ASSERT_TRUE(e);
  const tokenizer::Tokenizer& tok = e->tokenizer();
  eval::PasskeyTask task(tok, eval::TokenizeLines(tok, ReadAll(Heldout())));
  std::mt19937_64 rng(5);
  for (double depth : {0.0, 0.3, 1.0}) {
    auto d = task.Make(2048, depth, rng);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->prompt.size() + d->answer.size(), 2048u);
    EXPECT_EQ(d->prompt[0], tok.vocab().bos_id);
    EXPECT_EQ(tok.Decode(d->answer), std::to_string(d->key));
    const std::vector<int32_t> needle(d->prompt.begin() + d->needle_pos, d->prompt.begin() + d->needle_pos + 20);
    EXPECT_LE(tok.Decode(needle).find("The pass key is #" + std::to_string(d->key) + "#"), 1u) << tok.Decode(needle);
    const double at = static_cast<double>(d->needle_pos) / 2048.0;
    EXPECT_NEAR(at, depth, 0.05) << "needle at token " << d->needle_pos;
    const std::string tail = tok.Decode(std::vector<int32_t>(d->prompt.end() - 40, d->prompt.end()));
    EXPECT_NE(tail.find("What is the pass key? The pass key is #"), std::string::npos) << tail;
  }
  EXPECT_FALSE(task.Make(20, 0.5, rng).ok());
  EXPECT_FALSE(task.Make(1000000, 0.5, rng).ok());
  EXPECT_FALSE(task.Make(1024, 1.5, rng).ok());
}

TEST(LongctxModelTest, ExactAttentionRetrievesThePassKeyAtEveryDepth) {
  auto e = Load();
  ASSERT_TRUE(e);
  const tokenizer::Tokenizer& tok = e->tokenizer();
  const std::vector<int32_t> heldout = eval::TokenizeLines(tok, ReadAll(Heldout()));
  eval::PasskeyTask task(tok, heldout);
  eval::KvEvalOptions o;
  o.contexts = {1024, 4096};
  o.depths = {0.0, 0.5, 1.0};
  o.trials = 2;
  o.ppl_context = 1024;
  o.ppl_windows = 1;
  eval::KvEvalMode exact, quest_full, quest_small;
  quest_full.sparse.mode = kv::KvSparseMode::kQuest;  // budget: the whole context
  quest_small.sparse.mode = kv::KvSparseMode::kQuest;
  quest_small.budget_div = 16;
  o.modes = {exact, quest_full, quest_small};
  auto r = eval::RunKvEval(*e, task, heldout, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  int64_t ok = 0, n = 0;
  for (const auto& row : r->modes[0].passkey)
    for (const eval::PasskeyCell& c : row) ok += c.correct, n += c.trials;
  EXPECT_GE(ok, n - 1) << r->Format();
  // A budget covering the context: the same answers and the same perplexity, to the bit.
  for (size_t c = 0; c < o.contexts.size(); ++c)
    for (size_t d = 0; d < o.depths.size(); ++d)
      EXPECT_EQ(r->modes[1].passkey[c][d].correct, r->modes[0].passkey[c][d].correct);
  EXPECT_EQ(r->modes[1].ppl, r->modes[0].ppl);
  EXPECT_EQ(r->modes[1].blocks_read_share, 1.0);
  // 1/16 of the context reads a fraction of the blocks (and its perplexity is its own).
  EXPECT_LT(r->modes[2].blocks_read_share, 0.5);
  EXPECT_NE(r->modes[2].ppl, r->modes[0].ppl);
  EXPECT_GT(r->modes[0].ppl, 1.0);
  EXPECT_LT(r->modes[0].ppl, 40.0) << "the model is trained: held-out perplexity well below the vocabulary's 512";
}

}  // namespace
}  // namespace tierlm
