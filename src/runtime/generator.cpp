#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace tierlm {

namespace {
double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Result<GenerateStats> Generate(LlamaModel& model, KvCache& kv, ThreadPool* pool, const GenerateRequest& req) {
  GenerateStats stats;
  stats.n_prompt = static_cast<int64_t>(req.prompt.size());
  if (req.prompt.empty()) return Status::InvalidArgument("the prompt is empty: nothing to continue from");
  const int64_t room = kv.n_ctx() - kv.n_past();
  if (stats.n_prompt > room)
    return Status::OutOfRange("the prompt has " + std::to_string(stats.n_prompt) + " tokens but the context holds " +
                              std::to_string(room) + " more (context size " + std::to_string(kv.n_ctx()) +
                              "): shorten the prompt or raise -c");

  Sampler sampler(req.sampling);
  for (int32_t t : req.prompt) sampler.Accept(t);

  const auto t_start = std::chrono::steady_clock::now();
  std::vector<float> logits;
  if (req.prefill_progress) {
    // The batches Forward would split the prompt into, one call each, to report between
    // them (the same computation: only the last batch's logits are kept).
    const uint64_t n = req.prompt.size();
    const uint64_t step = static_cast<uint64_t>(std::max<int64_t>(model.max_batch(), 1));
    req.prefill_progress(0, n);
    for (uint64_t at = 0; at < n; at += step) {
      const uint64_t len = std::min(step, n - at);
      TIERLM_RETURN_IF_ERROR(model.Forward(req.prompt.subspan(at, len), kv, /*all_logits=*/false, &logits, pool));
      req.prefill_progress(at + len, n);
    }
  } else {
    TIERLM_RETURN_IF_ERROR(model.Forward(req.prompt, kv, /*all_logits=*/false, &logits, pool));
  }
  stats.prompt_ms = MsSince(t_start);

  const int64_t n_vocab = model.hparams().n_vocab;
  auto t_decode = std::chrono::steady_clock::now();
  int32_t last = -1;
  for (int64_t i = 0; req.n_predict < 0 || i < req.n_predict; ++i) {
    const int32_t next = sampler.Sample(std::span<const float>(logits.data(), static_cast<size_t>(n_vocab)));
    last = next;
    sampler.Accept(next);
    if (stats.n_generated == 0) {
      stats.ttft_ms = MsSince(t_start);
      t_decode = std::chrono::steady_clock::now();
    }
    ++stats.n_generated;
    if (req.is_eog && req.is_eog(next)) {
      stats.stopped_at_eog = true;
      break;
    }
    if (req.on_token && !req.on_token(next)) break;
    if (req.n_predict >= 0 && i + 1 >= req.n_predict) break;
    if (kv.n_past() >= kv.n_ctx()) {
      stats.context_full = true;
      break;
    }
    const int32_t tok[1] = {next};
    TIERLM_RETURN_IF_ERROR(model.Forward(std::span<const int32_t>(tok, 1), kv, false, &logits, pool));
  }
  if (stats.n_generated > 0) stats.decode_ms = MsSince(t_decode);
  if (req.eval_last && last >= 0 && !stats.stopped_at_eog && kv.n_past() < kv.n_ctx()) {
    const int32_t tok[1] = {last};
    TIERLM_RETURN_IF_ERROR(model.Forward(std::span<const int32_t>(tok, 1), kv, false, &logits, pool));
  }
  return stats;
}

}  // namespace tierlm
