// stories260K, a real trained model, tells the same story as llama2.c's run.c and
// llama.cpp when decoded greedily from BOS (the text of llama2.c's doc/stories260K.md;
// provenance in tests/models/README.md), and continues "Once upon a time" with llama.cpp's
// tokens.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_runner.h"
#include "test_paths.h"

namespace tierlm {
namespace {

using testing::Quote;
using testing::RunShell;

const char kStory[] =
    " Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to "
    "play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, "
    "\"Don't worry, Lily. We can help you.\n";

TEST(StoriesGoldenTest, GreedyStoryFromBosMatchesLlama2c) {
  const auto model = testing::StoriesModel();
  const auto r = RunShell(Quote(testing::TierlmBinary()) + " run -m " + Quote(model.string()) +
                          " -p '' -n 256 --temp 0", /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, kStory);
}

TEST(StoriesGoldenTest, TokenIdsMatchLlamaCpp) {
  std::ifstream in(testing::Fixture("llamacpp/stories260K.json"));
  ASSERT_TRUE(in.good());
  const auto fx = nlohmann::json::parse(in);
  const auto& c = fx["cases"][0];
  ASSERT_EQ(c["prompt"].get<std::string>(), "Once upon a time");
  const auto greedy = c["greedy"].get<std::vector<int32_t>>();
  const auto model = testing::StoriesModel();
  const auto r = RunShell(Quote(testing::TierlmBinary()) + " run -m " + Quote(model.string()) +
                          " -p 'Once upon a time' --temp 0 --token-ids -n " + std::to_string(greedy.size()),
                          /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream ss(r.output);
  std::vector<int32_t> ids;
  for (int32_t id; ss >> id;) ids.push_back(id);
  EXPECT_EQ(ids, greedy);
}

}  // namespace
}  // namespace tierlm
