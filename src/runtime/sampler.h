// Sampler: turns a row of logits into the next token id.
//
// The chain follows llama.cpp's default order: logit bias, penalties (repetition, then
// OpenAI's presence and frequency over the same last repeat_last_n tokens), top-k, top-p,
// min-p, temperature, then a draw from the seeded generator. Temperature <= 0 is greedy
// (argmax after bias and penalties, lowest id wins ties).
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace tierlm {

struct SamplerParams {
  float temperature = 0.8f;   // <= 0: greedy
  int32_t top_k = 40;         // <= 0: off
  float top_p = 0.95f;        // >= 1: off
  float min_p = 0.05f;        // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off; > 1 discourages the last repeat_last_n tokens
  int32_t repeat_last_n = 64;
  uint64_t seed = 0xFFFFFFFF;   // fixed seed gives reproducible draws
  // OpenAI's penalties: presence subtracts once from a token seen in the window, frequency
  // once per occurrence. 0: off.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Added to a token's logit before anything else (OpenAI logit_bias); a bias of -100 or
  // less bans the token. Empty: none.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);

  // Picks the next token from logits[n_vocab]. Does not record it: call Accept().
  int32_t Sample(std::span<const float> logits);
  // Records a token that is now part of the context (for the repetition penalty).
  void Accept(int32_t token);

  static int32_t Argmax(std::span<const float> logits);

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
  std::vector<std::pair<float, int32_t>> cand_;  // scratch: (logit or prob, id)
};

}  // namespace tierlm
