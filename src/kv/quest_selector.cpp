#include "kv/quest_selector.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "kernels/block_score.h"

namespace tierlm::kv {

bool QuestSelector::Select(const SelectionQuery& query, uint8_t* skip) {
  const int64_t n_blocks = static_cast<int64_t>(query.table.size());
  const int64_t budget = std::max<int64_t>(1, options_.budget_tokens / block_size_);
  if (n_blocks <= budget) return false;
  const int64_t hd = summaries_->head_dim();
  const int64_t n_kv = summaries_->n_head_kv();
  const int64_t group = query.n_head / n_kv;
  const int64_t sinks = std::min<int64_t>(options_.sink_blocks, n_blocks);
  const int64_t recent_from = std::max<int64_t>(sinks, n_blocks - options_.recent_blocks);
  // Candidates: the blocks between the sinks and the recent window.
  const int64_t n_cand = recent_from - sinks;
  const int64_t keep = std::clamp<int64_t>(budget - sinks - (n_blocks - recent_from), 0, n_cand);
  scores_.resize(static_cast<size_t>(n_kv * n_cand));
  order_.resize(static_cast<size_t>(n_kv * n_cand));
  const int32_t* ids = query.table.data() + sinks;
  const int64_t stride = n_kv * 2 * hd;
  // Marks heads [g0, g1) from the scores of row r: the sinks, the window and the `keep` best.
  auto mark = [&](int64_t r, int64_t g0, int64_t g1) {
    const float* sc = scores_.data() + r * n_cand;
    int32_t* order = order_.data() + r * n_cand;
    auto higher = [&](int32_t a, int32_t b) { return sc[a] != sc[b] ? sc[a] > sc[b] : a < b; };
    std::iota(order, order + n_cand, 0);
    std::nth_element(order, order + keep, order + n_cand, higher);
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t b = 0; b < n_blocks; ++b) skip[b * n_kv + g] = (b >= sinks && b < recent_from) ? 1 : 0;
      for (int64_t i = 0; i < keep; ++i) skip[(sinks + order[i]) * n_kv + g] = 0;
    }
  };
  auto score = [&](int64_t g) {
    QuestBlockScores(query.q + g * group * hd, group, hd, summaries_->Bounds(query.layer, 0, g), stride, ids, n_cand,
                     scores_.data() + g * n_cand);
  };
  auto for_heads = [&](const std::function<void(int64_t)>& fn) {
    if (query.pool && query.pool->size() > 1 && n_kv > 1)
      query.pool->ParallelFor(n_kv, 1, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) fn(g);
      });
    else
      for (int64_t g = 0; g < n_kv; ++g) fn(g);
  };
  if (options_.shared_heads) {
    for_heads(score);
    float* best = scores_.data();
    for (int64_t g = 1; g < n_kv; ++g) {
      const float* h = scores_.data() + g * n_cand;
      for (int64_t c = 0; c < n_cand; ++c) best[c] = std::max(best[c], h[c]);
    }
    mark(0, 0, n_kv);
    return true;
  }
  for_heads([&](int64_t g) {
    score(g);
    mark(g, g, g + 1);
  });
  return true;
}

}  // namespace tierlm::kv
