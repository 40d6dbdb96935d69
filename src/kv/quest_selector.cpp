#include "kv/quest_selector.h"

#include <algorithm>
#include <cmath>
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
  scores_.resize(static_cast<size_t>(n_cand));
  order_.resize(static_cast<size_t>(n_cand));
  const int32_t* ids = query.table.data() + sinks;
  const int64_t stride = n_kv * 2 * hd;
  auto higher = [&](int32_t a, int32_t b) {
    const float sa = scores_[static_cast<size_t>(a)], sb = scores_[static_cast<size_t>(b)];
    return sa != sb ? sa > sb : a < b;
  };
  // Marks heads [g0, g1): the sinks, the window and the `keep` best of order_.
  auto mark = [&](int64_t g0, int64_t g1) {
    std::iota(order_.begin(), order_.end(), 0);
    std::nth_element(order_.begin(), order_.begin() + keep, order_.end(), higher);
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t b = 0; b < n_blocks; ++b) skip[b * n_kv + g] = (b >= sinks && b < recent_from) ? 1 : 0;
      for (int64_t i = 0; i < keep; ++i) skip[(sinks + order_[static_cast<size_t>(i)]) * n_kv + g] = 0;
    }
  };
  if (options_.shared_heads) {
    head_scores_.resize(static_cast<size_t>(n_cand));
    for (int64_t g = 0; g < n_kv; ++g) {
      QuestBlockScores(query.q + g * group * hd, group, hd, summaries_->Bounds(query.layer, 0, g), stride, ids,
                       n_cand, g == 0 ? scores_.data() : head_scores_.data());
      if (g > 0)
        for (int64_t c = 0; c < n_cand; ++c)
          scores_[static_cast<size_t>(c)] = std::max(scores_[static_cast<size_t>(c)], head_scores_[static_cast<size_t>(c)]);
    }
    mark(0, n_kv);
    return true;
  }
  for (int64_t g = 0; g < n_kv; ++g) {
    QuestBlockScores(query.q + g * group * hd, group, hd, summaries_->Bounds(query.layer, 0, g), stride, ids, n_cand,
                     scores_.data());
    mark(g, g + 1);
  }
  return true;
}

}  // namespace tierlm::kv
