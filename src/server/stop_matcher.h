// StopMatcher: OpenAI's `stop` strings over streamed text. Text comes in pieces (one per
// token, a stop string may span several); what Push returns is safe to send: it never
// contains a stop string or any part of one. Text that could be the start of a stop string
// is held back until the next piece settles it; at a match, the text before the stop string
// is released, the stop string and everything after it are dropped, and the matcher is
// done.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tierlm::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds a piece; returns the text now safe to emit (possibly empty). After a match,
  // returns "" for every piece.
  std::string Push(std::string_view piece);
  // The text still held back (generation ended without a match): all of it is output.
  std::string Flush();

  bool matched() const { return matched_; }
  // Bytes held back now (a possible stop-string prefix).
  size_t held() const { return held_.size(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
};

}  // namespace tierlm::server
