#include "synth/synth_vocab.h"

#include <cstdio>
#include <unordered_set>

namespace tierlm {

SynthVocab MakeSynthVocab(int64_t n_vocab) {
  SynthVocab v;
  std::unordered_set<std::string> seen;
  auto add = [&](const std::string& tok, float score, int32_t type) {
    if (static_cast<int64_t>(v.tokens.size()) >= n_vocab || !seen.insert(tok).second) return;
    v.tokens.push_back(tok);
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0.0f, 2);
  add("<s>", 0.0f, 3);
  add("</s>", 0.0f, 3);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name, 0.0f, 6);
  }
  const std::string space = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start mark
  const std::string letters = "etaoinshrdlcumwfgypbvkjxqz";
  const std::string others = "ETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,!?'\"-:;()";
  float score = -1.0f;
  // Single characters first (so every piece can be built by merges), then longer pieces
  // with higher scores than their parts' merges would need.
  add(space, score, 1);
  for (char c : letters) add(std::string(1, c), score, 1);
  for (char c : others) add(std::string(1, c), score, 1);
  for (char c : letters) add(space + c, score -= 0.01f, 1);
  for (char c : others) add(space + c, score -= 0.01f, 1);
  for (char a : letters)
    for (char b : letters) add(std::string{a, b}, score -= 0.001f, 1);
  for (char a : letters)
    for (char b : letters) add(space + a + b, score -= 0.001f, 1);
  for (char a : letters)
    for (char b : letters)
      for (char c : letters) {
        add(std::string{a, b, c}, score -= 0.0001f, 1);
        add(space + a + b + c, score -= 0.0001f, 1);
      }
  // Pad with numbered pieces if the vocabulary is larger still.
  for (int64_t i = 0; static_cast<int64_t>(v.tokens.size()) < n_vocab; ++i)
    add("<piece" + std::to_string(i) + ">", -1000.0f, 1);
  return v;
}

}  // namespace tierlm
