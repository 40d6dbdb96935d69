#include "tiers/weight_placement.h"

#include <algorithm>
#include <cstdio>

#include "io/storage_env.h"

namespace tierlm {
namespace {

uint64_t SlotBytes(uint64_t offset, uint64_t size, uint64_t file_size) {
  const uint64_t a0 = io::AlignDown(offset);
  const uint64_t a1 = std::min(io::AlignUp(offset + size), file_size);
  return io::AlignUp(a1 - a0);
}

bool EndsWith(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Lower ranks are pinned first.
int Rank(const WeightUnit& u, const gguf::TensorInfo* t) {
  if (u.expert) return 5;
  if (t && t->n_dims <= 1) return 0;
  const std::string& n = u.name;
  if (n.rfind("token_embd", 0) == 0 || n.rfind("output", 0) == 0) return 1;
  if (n.find(".attn_") != std::string::npos) return 2;
  if (n.find("ffn_gate_inp") != std::string::npos) return 2;  // router: small, used every token
  if (n.find(".ffn_") != std::string::npos) return 3;
  return 4;
}

}  // namespace

Result<WeightPlacement> PlanWeightPlacement(const gguf::GgufFile& file, const PlacementOptions& options) {
  WeightPlacement p;
  p.budget_bytes = options.budget_bytes;
  std::vector<const gguf::TensorInfo*> of_unit;  // the tensor behind each unit
  for (const gguf::TensorInfo& t : file.tensors()) {
    const bool stacked = EndsWith(t.name, "_exps.weight") && t.n_dims == 3 && t.ne[2] > 1;
    const uint64_t n = stacked ? static_cast<uint64_t>(t.ne[2]) : 1;
    const uint64_t each = t.size_bytes / n;
    for (uint64_t e = 0; e < n; ++e) {
      WeightUnit u;
      u.name = stacked ? t.name + "#" + std::to_string(e) : t.name;
      u.offset = t.file_offset + e * each;
      u.size = each;
      u.slot_bytes = SlotBytes(u.offset, u.size, file.file_size());
      u.expert = stacked;
      if (u.size == 0) continue;
      p.units.push_back(std::move(u));
      of_unit.push_back(&t);
    }
  }
  std::vector<size_t> order(p.units.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int ra = Rank(p.units[a], of_unit[a]), rb = Rank(p.units[b], of_unit[b]);
    if (ra != rb) return ra < rb;
    return p.units[a].slot_bytes < p.units[b].slot_bytes;
  });

  // MoE decode holds the gate and up slices of every routed expert at once (then their
  // down slices): room for n_used experts' slices besides one dense tensor.
  uint64_t largest_expert = 0;
  for (const WeightUnit& u : p.units)
    if (u.expert) largest_expert = std::max(largest_expert, u.slot_bytes);
  uint64_t n_used = 0;
  if (largest_expert > 0) {
    auto arch = file.GetString("general.architecture");
    auto used = arch.ok() ? file.GetI64(*arch + ".expert_used_count") : Result<int64_t>(Status::NotFound(""));
    n_used = used.ok() && *used > 0 ? static_cast<uint64_t>(*used) : 1;
  }
  uint64_t essentials = 0, largest_other = 0;
  for (size_t i = 0; i < p.units.size(); ++i) {
    p.total_bytes += p.units[i].slot_bytes;
    if (Rank(p.units[i], of_unit[i]) == 0)
      essentials += p.units[i].slot_bytes;
    else
      largest_other = std::max(largest_other, p.units[i].slot_bytes);
  }
  const uint64_t working = std::max(2 * largest_other, 3 * n_used * largest_expert + largest_other);
  p.min_budget_bytes = std::max<uint64_t>(essentials + working, io::kDirectIoAlignment);
  const uint64_t budget = io::AlignDown(options.budget_bytes);
  if (p.total_bytes > budget && budget < p.min_budget_bytes) {
    std::string largest_name;
    for (const WeightUnit& u : p.units)
      if (u.slot_bytes == largest_other) largest_name = u.name;
    return Status::OutOfRange(file.name() + ": a memory budget of " + std::to_string(options.budget_bytes) +
                              " bytes is too small; the smallest workable budget is " +
                              std::to_string(p.min_budget_bytes) + " bytes (" + std::to_string(working) +
                              " for streaming: two buffers of the largest streamed tensor '" + largest_name + "'" +
                              (n_used > 0 ? ", or the slices of the " + std::to_string(n_used) +
                                                " experts a token uses and one tensor" : std::string()) +
                              ", plus " + std::to_string(essentials) + " bytes of norms and biases kept in memory)");
  }

  if (p.total_bytes <= budget) {
    for (WeightUnit& u : p.units) u.pinned = true;
  } else {
    // Suffix maxima of slot bytes in pin order: the largest unit still streamed if the
    // greedy pass stops at position i.
    std::vector<uint64_t> largest_after(order.size() + 1, 0);
    for (size_t i = order.size(); i-- > 0;)
      largest_after[i] = std::max(largest_after[i + 1], p.units[order[i]].slot_bytes);
    const double share = std::clamp(options.pinned_share, 0.0, 1.0);
    const uint64_t ring_floor = static_cast<uint64_t>((1.0 - share) * static_cast<double>(budget));
    uint64_t pinned = 0, largest_skipped = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      WeightUnit& u = p.units[order[i]];
      const uint64_t largest_streamed = std::max(largest_after[i + 1], largest_skipped);
      const uint64_t ring = std::max({2 * largest_streamed, ring_floor, 3 * n_used * largest_expert + largest_streamed});
      if (u.expert) {
        // Experts are the expert cache's: resident by use, not pinned (class_split_policy.h).
        largest_skipped = std::max(largest_skipped, u.slot_bytes);
        continue;
      }
      if (Rank(u, of_unit[order[i]]) == 0 || pinned + u.slot_bytes + ring <= budget) {
        u.pinned = true;
        pinned += u.slot_bytes;
      } else {
        largest_skipped = std::max(largest_skipped, u.slot_bytes);
      }
    }
  }
  for (const WeightUnit& u : p.units) {
    if (u.pinned) {
      p.pinned_bytes += u.slot_bytes;
      ++p.n_pinned;
    } else {
      p.streamed_bytes_per_token += u.slot_bytes;
      p.largest_streamed_bytes = std::max(p.largest_streamed_bytes, u.slot_bytes);
      ++p.n_streamed;
    }
  }
  p.ring_bytes = budget > p.pinned_bytes ? budget - p.pinned_bytes : 0;
  return p;
}

std::string WeightPlacement::ToString() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "budget %.1f MiB: %d tensors pinned (%.1f MiB), %d streamed through a %.1f MiB ring "
                "(%.1f MiB read per token, largest %.1f MiB); smallest workable budget %.1f MiB",
                budget_bytes / 1048576.0, n_pinned, pinned_bytes / 1048576.0, n_streamed, ring_bytes / 1048576.0,
                streamed_bytes_per_token / 1048576.0, largest_streamed_bytes / 1048576.0,
                min_budget_bytes / 1048576.0);
  return buf;
}

}  // namespace tierlm
