#include "kv/kv_evictor.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tierlm::kv {

KvEvictor::KvEvictor(const KvEvictOptions& options, int32_t block_size) : options_(options), block_size_(block_size) {
  if (auto probe = MakeEvictionPolicy(options_, block_size_)) {
    wants_attention_ = probe->wants_attention();
    wants_surprisal_ = probe->wants_surprisal();
  }
}

KvEvictor::SeqState& KvEvictor::State(SeqId seq, int64_t pos) {
  SeqState& s = seqs_[seq];
  if (!s.policy) s.policy = MakeEvictionPolicy(options_, block_size_);
  if (pos < s.next) {  // cut back: what was seen from pos on is gone
    s.policy->Truncate(pos);
    s.has_prev = false;
    s.next = pos;
  }
  return s;
}

void KvEvictor::ObserveAttention(SeqId seq, int64_t pos, std::span<const float> mass) {
  SeqState& s = State(seq, pos);
  s.policy->ObserveAttention(pos, mass);
  s.next = pos + 1;
}

void KvEvictor::ObserveLogits(SeqId seq, int64_t pos, int32_t token, std::span<const float> logits) {
  SeqState& s = State(seq, pos);
  if (s.has_prev && s.next == pos && token >= 0 && token < static_cast<int32_t>(s.prev_logits.size())) {
    const float m = *std::max_element(s.prev_logits.begin(), s.prev_logits.end());
    double sum = 0;
    for (float x : s.prev_logits) sum += std::exp(static_cast<double>(x - m));
    const double lse = static_cast<double>(m) + std::log(sum);
    s.policy->ObserveSurprisal(pos, static_cast<float>(lse - s.prev_logits[static_cast<size_t>(token)]));
  } else if (pos == 0) {
    s.policy->ObserveSurprisal(0, 0.0f);  // nothing to predict the first token from
  }
  s.prev_logits.assign(logits.begin(), logits.end());
  s.has_prev = true;
  s.next = pos + 1;
}

Result<int64_t> KvEvictor::Enforce(PagedKvCache& cache, SeqId seq) {
  if (options_.mode == KvEvictMode::kNone) return 0;
  const KvBlockManager& bm = cache.blocks();
  if (!bm.HasSequence(seq)) return 0;
  const int64_t bs = block_size_;
  const int64_t max_blocks = options_.max_tokens / bs;
  // Full blocks past the sinks and before the window, all of their positions computed.
  const int64_t computed_full = std::min(cache.Computed(seq), bm.Length(seq)) / bs;
  const int64_t last = computed_full - 1 - options_.recent_blocks;  // the last candidate
  SeqState& st = State(seq, std::max<int64_t>(cache.Computed(seq), seqs_[seq].next));
  int64_t n = 0;
  std::vector<int64_t> candidates;
  while (bm.LiveBlocks(seq) > max_blocks) {
    const std::span<const BlockId> table = bm.BlockTable(seq);
    candidates.clear();
    for (int64_t i = options_.sink_blocks; i <= last && i < static_cast<int64_t>(table.size()); ++i)
      if (table[static_cast<size_t>(i)] != kHole) candidates.push_back(i);
    if (candidates.empty()) break;
    const int64_t victim = st.policy->Victim(candidates);
    if (std::find(candidates.begin(), candidates.end(), victim) == candidates.end())
      return Status::Internal("kv: eviction policy " + std::string(KvEvictModeName(options_.mode)) +
                              " picked block " + std::to_string(victim) + " of sequence " + std::to_string(seq) +
                              ", not a candidate");
    TIERLM_RETURN_IF_ERROR(cache.Evict(seq, victim));
    ++n;
  }
  evicted_ += static_cast<uint64_t>(n);
  return n;
}

void KvEvictor::Prune(const KvBlockManager& blocks) {
  for (auto it = seqs_.begin(); it != seqs_.end();)
    it = blocks.HasSequence(it->first) ? std::next(it) : seqs_.erase(it);
}

}  // namespace tierlm::kv
