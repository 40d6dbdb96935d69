// Stop strings over streamed pieces: nothing of a stop string ever comes out, whatever the
// split; text that could start one is held back only until it cannot.
#include "server/stop_matcher.h"

#include <gtest/gtest.h>

#include <random>

namespace tierlm::server {
namespace {

std::string Feed(const std::vector<std::string>& stops, const std::vector<std::string>& pieces, bool* matched) {
  StopMatcher m(stops);
  std::string out;
  for (const auto& p : pieces) out += m.Push(p);
  *matched = m.matched();
  out += m.Flush();
  return out;
}

TEST(StopMatcherTest, StopInsideOnePiece) {
  bool matched = false;
  EXPECT_EQ(Feed({"END"}, {"Hello EN", "D world"}, &matched), "Hello ");
  EXPECT_TRUE(matched);
  EXPECT_EQ(Feed({"END"}, {"abcENDdef"}, &matched), "abc");
  EXPECT_TRUE(matched);
}

TEST(StopMatcherTest, PrefixIsHeldBackThenReleased) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.Push("Hello E"), "Hello ");
  EXPECT_EQ(m.held(), 1u);
  EXPECT_EQ(m.Push("N"), "");
  EXPECT_EQ(m.Push("X"), "ENX");  // not a stop after all
  EXPECT_FALSE(m.matched());
  EXPECT_EQ(m.Push("EN"), "");
  EXPECT_EQ(m.Flush(), "EN");  // generation ended: what was held is output
}

TEST(StopMatcherTest, EarliestOfSeveralStops) {
  bool matched = false;
  EXPECT_EQ(Feed({"world", "lo w"}, {"hel", "lo wor", "ld"}, &matched), "hel");
  EXPECT_TRUE(matched);
  EXPECT_EQ(Feed({"\n\n", "x"}, {"a\n", "\nb"}, &matched), "a");
}

TEST(StopMatcherTest, NothingAfterAMatch) {
  StopMatcher m({"."});
  EXPECT_EQ(m.Push("One. Two"), "One");
  EXPECT_EQ(m.Push(" three"), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, NoStopsPassesEverything) {
  bool matched = false;
  EXPECT_EQ(Feed({}, {"a", "b", ""}, &matched), "ab");
  EXPECT_FALSE(matched);
  EXPECT_EQ(Feed({""}, {"a", "b"}, &matched), "ab");  // an empty stop string is ignored
}

// Every split of a text into pieces gives the same output: the text up to the first stop.
TEST(StopMatcherTest, AnySplitGivesTheSameResult) {
  const std::string text = "The cat sat on the mat. The dog sat on the log.";
  const std::vector<std::vector<std::string>> stop_sets = {{"sat on the l"}, {"mat.", "dog"}, {"zzz"}, {"e m", "t."}};
  std::mt19937 rng(5);
  for (const auto& stops : stop_sets) {
    size_t first = std::string::npos;
    for (const auto& s : stops) first = std::min(first, text.find(s));
    const std::string want = first == std::string::npos ? text : text.substr(0, first);
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<std::string> pieces;
      for (size_t at = 0; at < text.size();) {
        const size_t len = std::min<size_t>(1 + rng() % 5, text.size() - at);
        pieces.push_back(text.substr(at, len));
        at += len;
      }
      StopMatcher m(stops);
      std::string out;
      for (const auto& p : pieces) {
        const std::string got = m.Push(p);
        out += got;
        // Never any piece of a stop string in what was released beyond the true output.
        ASSERT_LE(out.size(), want.size());
        ASSERT_EQ(want.compare(0, out.size(), out), 0);
      }
      out += m.Flush();
      EXPECT_EQ(out, want);
      EXPECT_EQ(m.matched(), first != std::string::npos);
    }
  }
}

}  // namespace
}  // namespace tierlm::server
