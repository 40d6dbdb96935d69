// The pass-key retrieval task tierlm's long-context model is trained and judged on
// (tools/longctx/passkey.py builds the same documents for training).
//
// A document of n tokens is BOS, header, filler[:a], needle(key), filler[a:], question,
// answer(key): the filler a contiguous run of text tokens, a = depth * its length, each
// piece tokenized on its own (SentencePiece space prefix, no BOS) and the lists joined.
// The needle is "The pass key is #K#. Remember it. #K# is the pass key.", the question
// ends "The pass key is #", and the answer is K's digits (one token each).
// The prompt is everything before the answer; a model passes when greedy decoding gives
// the answer's tokens exactly.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace tierlm::eval {

// Text as the trainer tokenizes it: each line on its own, then a newline byte token.
std::vector<int32_t> TokenizeLines(const tokenizer::Tokenizer& tok, std::string_view text);

struct PasskeyDoc {
  std::vector<int32_t> prompt;  // BOS ... question
  std::vector<int32_t> answer;  // the key's tokens
  int64_t key = 0;
  int64_t needle_pos = 0;  // where the needle starts in the prompt
};

class PasskeyTask {
 public:
  // filler: the tokens documents take their filler from (held-out text).
  PasskeyTask(const tokenizer::Tokenizer& tok, std::vector<int32_t> filler);

  // A document of n tokens, answer included, with a random key (10000..99999) and filler
  // offset drawn from rng. InvalidArgument when n is too short for the fixed pieces or
  // longer than the filler allows; depth in [0, 1].
  Result<PasskeyDoc> Make(int64_t n, double depth, std::mt19937_64& rng) const;

  int64_t filler_tokens() const { return static_cast<int64_t>(filler_.size()); }

 private:
  const tokenizer::Tokenizer* tok_;
  std::vector<int32_t> filler_, header_, question_;
};

}  // namespace tierlm::eval
