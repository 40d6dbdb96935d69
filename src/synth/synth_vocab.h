// A synthetic SentencePiece-style vocabulary: control tokens, 256 byte tokens and
// letter pieces with and without the word-start mark, scored so that longer pieces win.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tierlm {

struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // 1 normal, 2 unknown, 3 control, 6 byte
};

// n_vocab >= 260 tokens: <unk>, <s>, </s>, <0x00>..<0xFF>, then pieces.
SynthVocab MakeSynthVocab(int64_t n_vocab);

}  // namespace tierlm
