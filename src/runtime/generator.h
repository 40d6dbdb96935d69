// Generation: prefill a prompt, then decode one token at a time until a stop.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "core/progress.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "kv/kv_cache.h"
#include "model/llama_model.h"
#include "runtime/sampler.h"

namespace tierlm {

struct GenerateRequest {
  std::span<const int32_t> prompt;  // appended after the tokens already in the KV cache
  int64_t n_predict = 128;          // < 0: until end of generation or a full context
  SamplerParams sampling;
  std::function<bool(int32_t)> is_eog;    // end-of-generation tokens (EOS, EOT, ...)
  std::function<bool(int32_t)> on_token;  // streams each new token; return false to stop
  // Also run the last generated token through the model when generation stops for any
  // reason but an end-of-generation token, so the KV cache holds the whole reply (a
  // conversation continues from it). Default false: one forward pass fewer.
  bool eval_last = false;
  // Called with the prompt tokens evaluated so far and the prompt's length, after each
  // batch of the prefill (the model's max_batch tokens). Default: none.
  ProgressFn prefill_progress;
};

struct GenerateStats {
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  double prompt_ms = 0;  // prefill time
  double decode_ms = 0;  // time spent producing tokens after the first
  double ttft_ms = 0;    // from the call to the first generated token
  bool stopped_at_eog = false;
  bool context_full = false;

  double prompt_tps() const { return prompt_ms > 0 ? n_prompt * 1000.0 / prompt_ms : 0; }
  double decode_tps() const { return decode_ms > 0 && n_generated > 1 ? (n_generated - 1) * 1000.0 / decode_ms : 0; }
};

// Runs the request. A prompt that does not fit in the context is an OutOfRange error that
// says how many tokens it has and how many fit; nothing is evaluated then.
Result<GenerateStats> Generate(LlamaModel& model, KvCache& kv, ThreadPool* pool, const GenerateRequest& req);

}  // namespace tierlm
