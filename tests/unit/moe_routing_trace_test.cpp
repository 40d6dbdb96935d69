// RoutingTrace: recording per layer, complete tokens, save/load and its errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "moe/routing_trace.h"
#include "test_paths.h"

namespace tierlm {
namespace {

TEST(MoeRoutingTrace, TokensCompleteWhenEveryLayerRecorded) {
  RoutingTrace t(2, 4, 2);
  const int32_t e0[] = {0, 1, 2, 3, 1, 0};  // three tokens at layer 0
  const float w0[] = {0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f};
  ASSERT_TRUE(t.Record(0, 3, e0, w0).ok());
  EXPECT_EQ(t.n_tokens(), 0);
  const int32_t e1[] = {3, 2, 1, 0};  // two of them at layer 1
  ASSERT_TRUE(t.Record(1, 2, e1, w0).ok());
  EXPECT_EQ(t.n_tokens(), 2);
  const int32_t e2[] = {2, 3};  // the third, in its own batch
  ASSERT_TRUE(t.Record(1, 1, e2, w0).ok());
  EXPECT_EQ(t.n_tokens(), 3);
  EXPECT_EQ(t.expert(2, 0, 0), 1);
  EXPECT_EQ(t.expert(2, 1, 1), 3);
  EXPECT_FLOAT_EQ(t.weight(0, 0, 0), 0.6f);
}

TEST(MoeRoutingTrace, RejectsOutOfRangeLayerAndExpert) {
  RoutingTrace t(2, 4, 1);
  const int32_t bad[] = {4};
  const int32_t ok[] = {3};
  const float w[] = {1.0f};
  Status st = t.Record(0, 1, bad, w);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("expert 4"), std::string::npos) << st.message();
  EXPECT_EQ(t.Record(2, 1, ok, w).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(t.Record(1, 1, ok, w).ok());
  EXPECT_EQ(t.AppendToken(ok, w).code(), StatusCode::kInvalidArgument);  // layer 1 is ahead
  // One token naming one expert twice: refused, nothing recorded.
  RoutingTrace two(1, 4, 2);
  const int32_t twice[] = {1, 2, 3, 3};
  const float w2[] = {0.5f, 0.5f, 0.5f, 0.5f};
  st = two.Record(0, 2, twice, w2);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("expert 3 is chosen twice"), std::string::npos) << st.message();
  EXPECT_EQ(two.n_tokens(), 0);
}

TEST(MoeRoutingTrace, SaveLoadRoundTrip) {
  const auto dir = testing::ScratchDir("moe-trace");
  RoutingTrace t(3, 5, 2);
  for (int tok = 0; tok < 4; ++tok) {
    int32_t e[6];
    float w[6];
    for (int i = 0; i < 6; ++i) {
      e[i] = (tok + i) % 5;
      w[i] = 0.125f * static_cast<float>(i + 1);
    }
    ASSERT_TRUE(t.AppendToken(e, w).ok());
  }
  const std::string path = (dir / "r.trace").string();
  ASSERT_TRUE(t.Save(path).ok());
  auto back = RoutingTrace::Load(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->n_tokens(), 4);
  EXPECT_EQ(back->n_layer(), 3);
  EXPECT_EQ(back->n_expert(), 5);
  EXPECT_EQ(back->n_used(), 2);
  for (int tok = 0; tok < 4; ++tok)
    for (int l = 0; l < 3; ++l)
      for (int k = 0; k < 2; ++k) {
        EXPECT_EQ(back->expert(tok, l, k), t.expert(tok, l, k));
        EXPECT_FLOAT_EQ(back->weight(tok, l, k), t.weight(tok, l, k));
      }
  std::filesystem::remove_all(dir);
}

TEST(MoeRoutingTrace, SequencesSurviveSaveAndLoadAndVersionOneIsOneSequence) {
  const auto dir = testing::ScratchDir("moe-trace-seq");
  RoutingTrace t(1, 4, 1);
  const float w = 1.0f;
  EXPECT_TRUE(t.BeginSequence().ok());  // token 0 starts one already: a no-op
  for (int32_t e : {0, 1, 2}) ASSERT_TRUE(t.AppendToken(&e, &w).ok());
  ASSERT_TRUE(t.BeginSequence().ok());
  ASSERT_TRUE(t.BeginSequence().ok());  // twice at one token: still one start
  for (int32_t e : {3, 3}) ASSERT_TRUE(t.AppendToken(&e, &w).ok());
  ASSERT_TRUE(t.BeginSequence().ok());  // begun, nothing recorded: not a sequence yet
  EXPECT_EQ(t.sequence_starts(), (std::vector<int64_t>{0, 3}));
  using Ranges = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(t.sequences(), (Ranges{{0, 3}, {3, 5}}));
  const std::string path = (dir / "s.trace").string();
  ASSERT_TRUE(t.Save(path).ok());
  auto back = RoutingTrace::Load(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->sequences(), (Ranges{{0, 3}, {3, 5}}));
  EXPECT_EQ(back->expert(3, 0, 0), 3);
  // A partly recorded token cannot start a sequence.
  RoutingTrace partial(2, 4, 1);
  const int32_t e = 1;
  ASSERT_TRUE(partial.Record(0, 1, &e, &w).ok());
  EXPECT_EQ(partial.BeginSequence().code(), StatusCode::kInvalidArgument);
  // Version 1 files (before sequences were recorded) read as one sequence.
  const std::string v1 = (dir / "v1.trace").string();
  std::ofstream(v1) << "tierlm-routing-trace 1 1 4 1 3\n0 1\n1 1\n0 1\n";
  auto old = RoutingTrace::Load(v1);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->sequences(), (Ranges{{0, 3}}));
  std::filesystem::remove_all(dir);
}

TEST(MoeRoutingTrace, LoadNamesTheFaultyLine) {
  const auto dir = testing::ScratchDir("moe-trace-bad");
  auto write = [&](const std::string& text) {
    const std::string p = (dir / "bad.trace").string();
    std::ofstream(p) << text;
    return RoutingTrace::Load(p);
  };
  auto r = write("tierlm-routing-trace 1 1 4 1 2\n0 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 3: missing"), std::string::npos) << r.status().message();
  r = write("tierlm-routing-trace 1 1 4 1 1\n9 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 2"), std::string::npos) << r.status().message();
  r = write("tierlm-routing-trace 1 1 4 5 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad shape"), std::string::npos) << r.status().message();
  r = write("tierlm-routing-trace 2 1 4 1 2 2\nsequences 0 5\n0 1\n1 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 2: sequence start 5"), std::string::npos) << r.status().message();
  r = write("tierlm-routing-trace 2 1 4 1 2 2\nsequences 0\n0 1\n1 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected 2 sequence starts"), std::string::npos) << r.status().message();
  r = write("tierlm-routing-trace 2 1 4 1 2 1\n0 1\n1 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected 'sequences'"), std::string::npos) << r.status().message();
  r = write("tierlm-routing-trace 2 1 4 1 2 9\nsequences 0\n0 1\n1 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad sequence count 9"), std::string::npos) << r.status().message();
  r = write("tierlm-routing-trace 2 1 4 1 2 2\nsequences 0 1\n0 1\n1 1\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sequences().size(), 2u);
  r = write("tierlm-routing-trace 2 1 4 2 1 1\nsequences 0\n2 0.5 2 0.5\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 3: routing trace: expert 2 is chosen twice"), std::string::npos)
      << r.status().message();
  r = write("tierlm-routing-trace 3 1 4 1 0\n");
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  r = write("hello\n");
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tierlm
