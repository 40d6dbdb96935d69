// kv-report (eval/kv_trace.h, eval/kv_report.h): an attention trace survives a round trip
// and corrupt files are errors naming the file; each policy's recall on a hand-made trace
// is the share its picks hold, computed by hand; and a trace recorded on the trained model
// holds one record per (step, layer, KV head) whose shares sum to one, with the oracle
// above every policy and a whole-context budget reading everything.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "eval/kv_report.h"
#include "eval/kv_trace.h"
#include "eval/kv_trace_recorder.h"
#include "eval/passkey_task.h"
#include "runtime/engine.h"
#include "test_paths.h"

namespace tierlm {
namespace {

eval::KvTraceRecord Rec(int64_t pos, int32_t layer, std::vector<float> share, std::vector<float> quest) {
  eval::KvTraceRecord r;
  r.pos = pos;
  r.layer = layer;
  r.head = 0;
  r.share = std::move(share);
  r.quest = std::move(quest);
  return r;
}

// Two layers, two steps, 8 blocks. Budget 1/2: 4 blocks = sink 0, window 6 and 7, one more.
eval::KvTrace HandMade() {
  eval::KvTrace t;
  t.n_layer = 2;
  t.n_head_kv = 1;
  t.block_size = 16;
  // step 1, layer 0: block 3 is where attention goes; Quest thinks block 2.
  t.records.push_back(Rec(100, 0, {0.1f, 0.0f, 0.1f, 0.4f, 0.1f, 0.1f, 0.1f, 0.1f}, {0, 0, 9, 5, 0, 0, 0, 0}));
  // step 1, layer 1: block 4; Quest right.
  t.records.push_back(Rec(100, 1, {0.1f, 0.0f, 0.0f, 0.1f, 0.5f, 0.1f, 0.1f, 0.1f}, {0, 0, 0, 1, 7, 0, 0, 0}));
  // step 2, layer 0: block 1 now; Quest says block 5.
  t.records.push_back(Rec(101, 0, {0.1f, 0.3f, 0.1f, 0.2f, 0.0f, 0.1f, 0.1f, 0.1f}, {0, 1, 0, 0, 0, 2, 0, 0}));
  // step 2, layer 1: block 3; Quest says block 3.
  t.records.push_back(Rec(101, 1, {0.1f, 0.1f, 0.0f, 0.4f, 0.1f, 0.1f, 0.1f, 0.1f}, {0, 0, 0, 3, 1, 0, 0, 0}));
  return t;
}

TEST(KvTraceTest, SurvivesARoundTripAndCorruptFilesAreErrorsNamingThem) {
  const eval::KvTrace t = HandMade();
  const auto dir = testing::ScratchDir("kv-trace");
  const std::string path = (dir / "a.trace").string();
  ASSERT_TRUE(t.Save(path).ok());
  auto back = eval::KvTrace::Load(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->records.size(), 4u);
  EXPECT_EQ(back->records[2].pos, 101);
  EXPECT_EQ(back->records[3].share, t.records[3].share);
  EXPECT_EQ(back->records[0].quest, t.records[0].quest);
  const std::vector<uint8_t> bytes = t.Serialize();
  for (size_t cut : {size_t{0}, size_t{7}, size_t{23}, size_t{30}, bytes.size() - 1}) {
    auto r = eval::KvTrace::Parse(std::span<const uint8_t>(bytes.data(), cut), "cut.trace");
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    EXPECT_EQ(r.status().message().find("cut.trace: "), 0u) << r.status().message();
  }
  std::vector<uint8_t> bad = bytes;
  bad[0] = 'X';
  EXPECT_FALSE(eval::KvTrace::Parse(bad, "x").ok());
  bad = bytes;
  bad[24 + 8] = 9;  // the first record's layer
  EXPECT_FALSE(eval::KvTrace::Parse(bad, "x").ok());
  bad = bytes;
  bad.push_back(0);
  EXPECT_FALSE(eval::KvTrace::Parse(bad, "x").ok()) << "trailing bytes";
  EXPECT_FALSE(eval::KvTrace::Load((dir / "missing").string()).ok());
  std::filesystem::remove_all(dir);
}

TEST(KvReportTest, EachPolicysRecallIsTheShareOfItsPicks) {
  auto rep = eval::ReplayKvTrace(HandMade(), {1, 2});
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->steps, 2);
  EXPECT_EQ(rep->records, 4);
  auto recall = [&](const std::string& p, size_t d) {
    for (const auto& r : rep->rows)
      if (r.policy == p) return r.recall[d];
    ADD_FAILURE() << p;
    return -1.0;
  };
  // Fixed picks: sink 0 and window 6, 7 hold 0.3 in every record.
  for (const char* p : {"oracle", "quest", "prev-layer", "prev-step", "h2o", "streaming"})
    EXPECT_NEAR(recall(p, 0), 1.0, 1e-6) << p << ": a whole-context budget reads everything";
  // oracle: + the best other block: 0.4, 0.5, 0.3, 0.4.
  EXPECT_NEAR(recall("oracle", 1), (0.7 + 0.8 + 0.6 + 0.7) / 4, 1e-6);
  // quest: blocks 2, 4, 5, 3: 0.1, 0.5, 0.1, 0.4.
  EXPECT_NEAR(recall("quest", 1), (0.4 + 0.8 + 0.4 + 0.7) / 4, 1e-6);
  // streaming: block 5 (the newest outside the window): 0.1, 0.1, 0.1, 0.1.
  EXPECT_NEAR(recall("streaming", 1), 0.4, 1e-6);
  // prev-layer: layer 0 falls back to quest (2, 5); layer 1 takes layer 0's best at the
  // same step (3, then 1): 0.1 and 0.1.
  EXPECT_NEAR(recall("prev-layer", 1), (0.4 + 0.4 + 0.4 + 0.4) / 4, 1e-6);
  // prev-step: step 1 falls back to quest (2, 4); step 2 takes step 1's best (3: 0.2;
  // 4: 0.1).
  EXPECT_NEAR(recall("prev-step", 1), (0.4 + 0.8 + 0.5 + 0.4) / 4, 1e-6);
  // h2o after one step is prev-step.
  EXPECT_NEAR(recall("h2o", 1), recall("prev-step", 1), 1e-9);
  EXPECT_FALSE(eval::ReplayKvTrace(eval::KvTrace{}, {2}).ok());
  EXPECT_FALSE(eval::ReplayKvTrace(HandMade(), {0}).ok());
}

TEST(KvTraceRecorderTest, RecordsEveryStepLayerAndHeadOfTheTrainedModel) {
  EngineOptions o;
  o.model_path = (testing::SourceDir() / "tests" / "models" / "longctx.gguf").string();
  o.n_threads = 2;
  auto e = Engine::Load(o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  std::ifstream in(testing::SourceDir() / "tests" / "models" / "longctx-heldout.txt");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  std::vector<int32_t> toks = eval::TokenizeLines((*e)->tokenizer(), text);
  toks.resize(1200);
  toks[0] = (*e)->tokenizer().vocab().bos_id;
  auto t = eval::RecordKvTrace(**e, toks, 1190);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const ModelHParams& hp = (*e)->model().hparams();
  ASSERT_EQ(t->records.size(), static_cast<size_t>(10 * hp.n_layer * hp.n_head_kv));
  for (const auto& r : t->records) {
    EXPECT_NEAR(std::accumulate(r.share.begin(), r.share.end(), 0.0), 1.0, 1e-4);
    EXPECT_EQ(r.share.size(), static_cast<size_t>(r.pos / 16 + 1));
  }
  EXPECT_EQ((*e)->kv().n_past(), 0) << "the engine's cache is left empty";
  auto rep = eval::ReplayKvTrace(*t, {1, 4, 8});
  ASSERT_TRUE(rep.ok());
  const double oracle4 = rep->rows[0].recall[1];
  for (const auto& row : rep->rows) {
    EXPECT_NEAR(row.recall[0], 1.0, 1e-4) << row.policy;
    EXPECT_LE(row.recall[1], oracle4 + 1e-9) << row.policy;
    EXPECT_GE(row.recall[1], 0.25 - 0.05) << row.policy << ": a quarter of the blocks holds about a quarter at least";
  }
  EXPECT_FALSE(eval::RecordKvTrace(**e, toks, 0).ok());
  EXPECT_FALSE(eval::RecordKvTrace(**e, toks, 1200).ok());
}

}  // namespace
}  // namespace tierlm
