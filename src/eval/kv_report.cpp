#include "eval/kv_report.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <numeric>

namespace tierlm::eval {
namespace {

constexpr int64_t kSinks = 1, kRecent = 2;

// The share of `share` on the k blocks a policy scoring blocks by `score` picks: the sinks
// and the window always, then the highest scores (ties: the earlier block).
double Recall(const std::vector<float>& share, const std::vector<double>& score, int64_t k) {
  const int64_t nb = static_cast<int64_t>(share.size());
  if (k >= nb) return std::accumulate(share.begin(), share.end(), 0.0);
  std::vector<uint8_t> pick(static_cast<size_t>(nb), 0);
  int64_t taken = 0;
  for (int64_t b = 0; b < std::min(kSinks, nb); ++b) pick[static_cast<size_t>(b)] = 1, ++taken;
  for (int64_t b = std::max<int64_t>(0, nb - kRecent); b < nb; ++b)
    if (!pick[static_cast<size_t>(b)]) pick[static_cast<size_t>(b)] = 1, ++taken;
  std::vector<int64_t> order;
  for (int64_t b = 0; b < nb; ++b)
    if (!pick[static_cast<size_t>(b)]) order.push_back(b);
  const int64_t more = std::clamp<int64_t>(k - taken, 0, static_cast<int64_t>(order.size()));
  std::partial_sort(order.begin(), order.begin() + more, order.end(), [&](int64_t a, int64_t b) {
    const double sa = score[static_cast<size_t>(a)], sb = score[static_cast<size_t>(b)];
    return sa != sb ? sa > sb : a < b;
  });
  for (int64_t i = 0; i < more; ++i) pick[static_cast<size_t>(order[static_cast<size_t>(i)])] = 1;
  double got = 0;
  for (int64_t b = 0; b < nb; ++b)
    if (pick[static_cast<size_t>(b)]) got += share[static_cast<size_t>(b)];
  return got;
}

std::vector<double> AsScore(const std::vector<float>& v, size_t nb) {
  std::vector<double> s(nb, 0.0);
  for (size_t i = 0; i < std::min(nb, v.size()); ++i) s[i] = v[i];
  return s;
}

}  // namespace

Result<KvReport> ReplayKvTrace(const KvTrace& t, const std::vector<int64_t>& divs) {
  if (t.records.empty()) return Status::InvalidArgument("kv-report: the trace has no records");
  for (int64_t d : divs)
    if (d < 1) return Status::InvalidArgument("kv-report: budget divisor " + std::to_string(d) + " is below 1");
  const std::vector<std::string> names = {"oracle", "quest", "prev-layer", "prev-step", "h2o", "streaming"};
  const size_t P = names.size(), D = divs.size(), L = static_cast<size_t>(t.n_layer);
  // [policy][budget][layer]: sum and count.
  std::vector<double> sum(P * D * L, 0.0);
  std::vector<int64_t> count(L, 0);
  // Per (layer, head): the latest shares seen (records come by step, then layer: the layer
  // below's entry is this step's, a layer's own is the step before's), and the sums over
  // earlier steps.
  std::map<std::pair<int32_t, int32_t>, std::vector<float>> latest;
  std::map<std::pair<int32_t, int32_t>, std::vector<double>> summed;
  int64_t step_pos = -1, steps = 0;
  for (const KvTraceRecord& r : t.records) {
    if (r.pos != step_pos) {
      step_pos = r.pos;
      ++steps;
    }
    const size_t nb = r.share.size();
    const std::vector<double> quest = AsScore(r.quest, nb);
    const auto key = std::make_pair(r.layer, r.head);
    const auto below = std::make_pair(r.layer - 1, r.head);
    std::vector<double> streaming(nb);
    for (size_t b = 0; b < nb; ++b) streaming[b] = static_cast<double>(b);  // newest first
    // A predictor's shares as scores; blocks it never saw (newer than it) score 0.
    auto from = [&](const auto& m, const std::pair<int32_t, int32_t>& k) -> std::vector<double> {
      auto it = m.find(k);
      if (it == m.end()) return quest;
      std::vector<double> s(nb, 0.0);
      for (size_t i = 0; i < std::min(nb, it->second.size()); ++i) s[i] = it->second[i];
      return s;
    };
    auto below_it = latest.find(below);
    const bool have_below = r.layer > 0 && below_it != latest.end() && below_it->second.size() == nb;
    const std::vector<double> scores[] = {
        AsScore(r.share, nb),
        quest,
        have_below ? from(latest, below) : quest,
        from(latest, key),
        from(summed, key),
        streaming,
    };
    for (size_t d = 0; d < D; ++d) {
      const int64_t k = std::max<int64_t>(kSinks + kRecent, (static_cast<int64_t>(nb) + divs[d] - 1) / divs[d]);
      for (size_t p = 0; p < P; ++p) sum[(p * D + d) * L + static_cast<size_t>(r.layer)] += Recall(r.share, scores[p], k);
    }
    ++count[static_cast<size_t>(r.layer)];
    latest[key] = r.share;
    std::vector<double>& acc = summed[key];
    if (acc.size() < nb) acc.resize(nb, 0.0);
    for (size_t b = 0; b < nb; ++b) acc[b] += r.share[b];
  }
  KvReport rep;
  rep.budget_divs = divs;
  rep.records = static_cast<int64_t>(t.records.size());
  rep.steps = steps;
  for (size_t p = 0; p < P; ++p) {
    KvReportRow row;
    row.policy = names[p];
    for (size_t d = 0; d < D; ++d) {
      double all = 0, worst = 1e9;
      int64_t n = 0;
      row.by_layer.emplace_back(L, 0.0);
      for (size_t l = 0; l < L; ++l) {
        if (count[l] == 0) continue;
        const double s = sum[(p * D + d) * L + l];
        all += s;
        n += count[l];
        row.by_layer.back()[l] = s / static_cast<double>(count[l]);
        worst = std::min(worst, s / static_cast<double>(count[l]));
      }
      row.recall.push_back(all / static_cast<double>(n));
      row.worst_layer.push_back(worst);
    }
    rep.rows.push_back(row);
  }
  return rep;
}

std::string KvReport::Format() const {
  std::string out;
  char buf[128];
  std::snprintf(buf, sizeof buf, "attention recall: %lld decode steps, %lld (step, layer, KV head) records\n",
                static_cast<long long>(steps), static_cast<long long>(records));
  out += buf;
  out += "share of the true attention on the blocks each policy reads (mean; worst layer's mean)\n| policy |";
  for (int64_t d : budget_divs) out += " 1/" + std::to_string(d) + " |";
  out += "\n|---|";
  for (size_t i = 0; i < budget_divs.size(); ++i) out += "---|";
  out += "\n";
  for (const KvReportRow& r : rows) {
    out += "| " + r.policy + " |";
    for (size_t d = 0; d < r.recall.size(); ++d) {
      std::snprintf(buf, sizeof buf, " %.1f%% (%.1f%%) |", 100 * r.recall[d], 100 * r.worst_layer[d]);
      out += buf;
    }
    out += "\n";
  }
  if (rows.empty() || budget_divs.empty()) return out;
  size_t pick = 0;
  for (size_t d = 0; d < budget_divs.size(); ++d)
    if (std::abs(budget_divs[d] - 8) < std::abs(budget_divs[pick] - 8)) pick = d;
  out += "\nper layer at 1/" + std::to_string(budget_divs[pick]) + "\n| policy |";
  const size_t L = rows[0].by_layer[pick].size();
  for (size_t l = 0; l < L; ++l) out += " layer " + std::to_string(l) + " |";
  out += "\n|---|";
  for (size_t l = 0; l < L; ++l) out += "---|";
  out += "\n";
  for (const KvReportRow& r : rows) {
    out += "| " + r.policy + " |";
    for (size_t l = 0; l < L; ++l) {
      std::snprintf(buf, sizeof buf, " %.1f%% |", 100 * r.by_layer[pick][l]);
      out += buf;
    }
    out += "\n";
  }
  return out;
}

}  // namespace tierlm::eval
