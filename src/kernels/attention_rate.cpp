#include "kernels/attention_rate.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/paged_attention.h"

namespace tierlm {

Result<double> MeasurePagedDecodeRate(const AttentionShape& s, const kv::KvFormat& f, int64_t keys, ThreadPool* pool,
                                      double seconds) {
  if (keys < 1) return Status::InvalidArgument("attention rate: " + std::to_string(keys) + " keys");
  if (s.n_head_kv < 1 || s.n_head % s.n_head_kv != 0 || s.head_dim < 1)
    return Status::InvalidArgument("attention rate: " + std::to_string(s.n_head) + " query heads over " +
                                   std::to_string(s.n_head_kv) + " KV heads of " + std::to_string(s.head_dim));
  const int64_t B = f.block_size;
  const int64_t n_blocks = (keys + B - 1) / B;
  if (n_blocks > (1 << 30)) return Status::InvalidArgument("attention rate: " + std::to_string(keys) + " keys");
  // One layer's keys and values, then copies of its bytes as further layers until they
  // pass kRateBytes (no cache holds them): calls cycle through the layers, as decode does.
  const auto block_bytes = static_cast<int64_t>(kv::PagedKvStore::BlockBytes(1, s.n_head_kv, s.head_dim, f));
  const int64_t n_layers = std::clamp<int64_t>(kRateBytes / std::max<int64_t>(1, block_bytes * n_blocks) + 1, 1, 64);
  TIERLM_ASSIGN_OR_RETURN(
      kv::PagedKvStore store,
      kv::PagedKvStore::Create(n_layers, s.n_head_kv, s.head_dim, f, static_cast<int32_t>(n_blocks)));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> k(static_cast<size_t>(s.n_head_kv * s.head_dim)), v(k.size());
  for (int64_t p = 0; p < keys; ++p) {
    for (float& x : k) x = nd(rng);
    for (float& x : v) x = nd(rng);
    store.Write(0, {static_cast<kv::BlockId>(p / B), static_cast<int32_t>(p % B)}, k.data(), v.data());
  }
  for (int64_t l = 1; l < n_layers; ++l)
    for (int64_t b = 0; b < n_blocks; ++b)
      std::memcpy(store.Layer(l).blocks[b], store.Layer(0).blocks[b], static_cast<size_t>(block_bytes));
  // The blocks in a shuffled order, as a sequence's are once the cache has been in use.
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  const PagedQuery row{table.data(), keys};
  std::vector<float> q(static_cast<size_t>(s.n_head * s.head_dim)), out(q.size());
  for (float& x : q) x = nd(rng);
  using Clock = std::chrono::steady_clock;
  int64_t layer = 0;
  auto call = [&] {
    PagedAttention(s, store.Layer(layer), std::span<const PagedQuery>(&row, 1), q.data(), out.data(), pool);
    layer = (layer + 1) % n_layers;
  };
  call();  // warm up
  // The best of five windows: a busy machine's pauses count against a window, not the rate.
  double best = 0;
  for (int w = 0; w < 5; ++w) {
    int64_t calls = 0;
    const Clock::time_point t0 = Clock::now();
    double elapsed = 0;
    do {
      call();
      ++calls;
      elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (elapsed < seconds / 5);
    best = std::max(best, DecodeAttentionFlops(s, keys) * static_cast<double>(calls) / elapsed);
  }
  return best;
}

}  // namespace tierlm
