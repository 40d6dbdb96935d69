#include "moe/synthetic_locality.h"

#include <random>
#include <vector>

namespace tierlm {

Result<RoutingTrace> WithLocality(const RoutingTrace& trace, double p, uint64_t seed) {
  if (!(p >= 0.0 && p <= 1.0)) return Status::InvalidArgument("locality probability must be in [0, 1]");
  const int32_t L = trace.n_layer(), K = trace.n_used();
  RoutingTrace out(L, trace.n_expert(), K);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<int32_t> experts(static_cast<size_t>(L * K));
  std::vector<float> weights(static_cast<size_t>(L * K));
  const std::vector<int64_t> starts = trace.sequence_starts();
  size_t next_start = 1;
  for (int64_t t = 0; t < trace.n_tokens(); ++t) {
    // A sequence's first token has no previous token to re-use.
    const bool first = t == 0 || (next_start < starts.size() && starts[next_start] == t);
    if (t > 0 && first) {
      TIERLM_RETURN_IF_ERROR(out.BeginSequence());
      ++next_start;
    }
    for (int32_t l = 0; l < L; ++l) {
      // Draw for every (token, layer), so the stream of draws does not depend on p.
      const bool reuse = t > 0 && uniform(rng) < p && !first;
      for (int32_t k = 0; k < K; ++k) {
        const size_t i = static_cast<size_t>(l * K + k);
        experts[i] = reuse ? out.expert(t - 1, l, k) : trace.expert(t, l, k);
        weights[i] = reuse ? out.weight(t - 1, l, k) : trace.weight(t, l, k);
      }
    }
    TIERLM_RETURN_IF_ERROR(out.AppendToken(experts.data(), weights.data()));
  }
  return out;
}

}  // namespace tierlm
