#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>

namespace tierlm {

Sampler::Sampler(const SamplerParams& params) : p_(params), rng_(params.seed) {}

int32_t Sampler::Argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  return best;
}

void Sampler::Accept(int32_t token) {
  if (p_.repeat_last_n <= 0) return;
  recent_.push_back(token);
  while (static_cast<int32_t>(recent_.size()) > p_.repeat_last_n) recent_.pop_front();
}

int32_t Sampler::Sample(std::span<const float> logits) {
  cand_.clear();
  cand_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) cand_.emplace_back(logits[i], static_cast<int32_t>(i));

  for (const auto& [id, bias] : p_.logit_bias) {
    if (id < 0 || static_cast<size_t>(id) >= cand_.size()) continue;
    float& logit = cand_[static_cast<size_t>(id)].first;
    logit = bias <= -100.0f ? -std::numeric_limits<float>::infinity() : logit + bias;
  }

  if (p_.repeat_penalty != 1.0f && !recent_.empty()) {
    std::unordered_set<int32_t> seen(recent_.begin(), recent_.end());
    for (auto& [logit, id] : cand_)
      if (seen.count(id)) logit = logit > 0 ? logit / p_.repeat_penalty : logit * p_.repeat_penalty;
  }
  if ((p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) && !recent_.empty()) {
    std::unordered_map<int32_t, int32_t> count;
    for (int32_t t : recent_) ++count[t];
    for (const auto& [id, c] : count) {
      if (id < 0 || static_cast<size_t>(id) >= cand_.size()) continue;
      cand_[static_cast<size_t>(id)].first -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(c);
    }
  }

  if (p_.temperature <= 0.0f) {
    int32_t best = 0;
    for (size_t i = 1; i < cand_.size(); ++i)
      if (cand_[i].first > cand_[static_cast<size_t>(best)].first) best = static_cast<int32_t>(i);
    return cand_[static_cast<size_t>(best)].second;
  }

  // Sort descending by logit (stable on id for reproducibility), then cut.
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < keep) {
    keep = static_cast<size_t>(p_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(keep), cand_.end(), by_logit);
    cand_.resize(keep);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }

  // Softmax of the (untempered) logits for the top-p / min-p cuts.
  auto softmax = [&](float temp) {
    const float mx = cand_.front().first;
    std::vector<float> probs(cand_.size());
    double sum = 0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      probs[i] = std::exp((cand_[i].first - mx) / temp);
      sum += probs[i];
    }
    for (auto& pr : probs) pr = static_cast<float>(pr / sum);
    return probs;
  };

  if (p_.top_p < 1.0f) {
    auto probs = softmax(1.0f);
    double cum = 0;
    size_t cut = cand_.size();
    for (size_t i = 0; i < probs.size(); ++i) {
      cum += probs[i];
      if (cum >= p_.top_p) {
        cut = i + 1;
        break;
      }
    }
    cand_.resize(std::max<size_t>(1, cut));
  }
  if (p_.min_p > 0.0f) {
    // Keep tokens whose probability is at least min_p times the top token's.
    const float threshold = cand_.front().first + std::log(p_.min_p);
    size_t cut = 1;
    while (cut < cand_.size() && cand_[cut].first >= threshold) ++cut;
    cand_.resize(cut);
  }

  auto probs = softmax(p_.temperature);
  std::discrete_distribution<size_t> dist(probs.begin(), probs.end());
  return cand_[dist(rng_)].second;
}

}  // namespace tierlm
