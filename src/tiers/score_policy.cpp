#include "tiers/score_policy.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <tuple>
#include <vector>

namespace tierlm {

ScorePolicy::ScorePolicy(int32_t n_layer, std::function<int32_t(EntryId)> layer_of, ScorePolicyOptions options)
    : n_layer_(std::max(n_layer, 1)),
      layer_of_(std::move(layer_of)),
      options_(options),
      freq_(LfuDecayOptions{options.freq_half_life_accesses}) {}

void ScorePolicy::OnInsert(EntryId id) {
  freq_.OnInsert(id);
  last_use_[id] = now_;
}

void ScorePolicy::OnAccess(EntryId id) {
  auto it = last_use_.find(id);
  if (it == last_use_.end()) return;
  freq_.OnAccess(id);
  it->second = ++now_;
  next_layer_ = (layer_of_(id) + 1) % n_layer_;
}

void ScorePolicy::OnErase(EntryId id) {
  freq_.OnErase(id);
  last_use_.erase(id);
}

double ScorePolicy::MaxHeat() const {
  double mx = 0;
  for (const auto& [id, last] : last_use_) mx = std::max(mx, freq_.Heat(id));
  return mx;
}

double ScorePolicy::ScoreWith(EntryId id, double max_heat) const {
  const double freq = max_heat > 0 ? freq_.Heat(id) / max_heat : 0.0;
  const double age = static_cast<double>(now_ - last_use_.at(id));
  const double recency = std::exp2(-age / std::max(options_.recency_half_life_accesses, 1e-9));
  const int32_t distance = ((layer_of_(id) - next_layer_) % n_layer_ + n_layer_) % n_layer_;
  const double proximity = 1.0 - static_cast<double>(distance) / n_layer_;
  return options_.freq_weight * freq + options_.recency_weight * recency + options_.layer_weight * proximity;
}

double ScorePolicy::Score(EntryId id) const { return ScoreWith(id, MaxHeat()); }

void ScorePolicy::VisitVictims(const std::function<bool(EntryId)>& visit) const {
  const double max_heat = MaxHeat();
  std::vector<std::tuple<double, uint64_t, EntryId>> order;  // (score, last use, id) ascending
  order.reserve(last_use_.size());
  for (const auto& [id, last] : last_use_) order.emplace_back(ScoreWith(id, max_heat), last, id);
  // A heap, not a sort: a victim is usually found among the first few (O(n) per eviction).
  std::make_heap(order.begin(), order.end(), std::greater<>());
  while (!order.empty()) {
    std::pop_heap(order.begin(), order.end(), std::greater<>());
    if (!visit(std::get<2>(order.back()))) return;
    order.pop_back();
  }
}

}  // namespace tierlm
