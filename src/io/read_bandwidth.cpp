#include "io/read_bandwidth.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

namespace tierlm::io {

Result<ReadBandwidth> MeasureReadBandwidth(RandomAccessFile& file, uint64_t max_bytes, uint64_t chunk, int depth) {
  const uint64_t size = file.size();
  const uint64_t total = std::min(max_bytes, size) / chunk * chunk;
  if (total == 0) return Status::InvalidArgument(file.name() + ": too small to measure read bandwidth");
  const uint64_t start = ((size - total) / 2) / 4096 * 4096;
  const size_t buf_bytes = static_cast<size_t>(chunk) * static_cast<size_t>(depth);
  void* mem = ::mmap(nullptr, buf_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return Status::ResourceExhausted("cannot map read buffers: " + std::string(std::strerror(errno)));
  auto* buf = static_cast<uint8_t*>(mem);

  const auto t0 = std::chrono::steady_clock::now();
  uint64_t next = 0, done = 0;
  std::vector<ReadId> in_flight;
  std::vector<int> free_slots;
  for (int i = depth - 1; i >= 0; --i) free_slots.push_back(i);
  Status st;
  std::vector<ReadResult> results;
  while (done < total && st.ok()) {
    while (!free_slots.empty() && next < total) {
      const int slot = free_slots.back();
      free_slots.pop_back();
      ReadRequest r;
      r.offset = start + next;
      r.len = chunk;
      r.dst = buf + static_cast<size_t>(slot) * chunk;
      r.user_data = static_cast<uint64_t>(slot);
      in_flight.push_back(file.Submit(r));
      next += chunk;
    }
    results.clear();
    // Wait for the oldest request; collect whatever else has finished too.
    st = file.Wait(std::span<const ReadId>(in_flight.data(), 1), 60'000'000'000, &results);
    for (auto& res : file.Poll()) results.push_back(std::move(res));
    for (const auto& res : results) {
      if (!res.status.ok()) st = res.status;
      done += res.bytes;
      free_slots.push_back(static_cast<int>(res.user_data));
      in_flight.erase(std::remove(in_flight.begin(), in_flight.end(), res.id), in_flight.end());
    }
  }
  // Drain what is still in flight before the buffers go away.
  if (!in_flight.empty()) {
    std::vector<ReadResult> rest;
    (void)file.Wait(in_flight, 60'000'000'000, &rest);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::munmap(mem, buf_bytes);
  if (!st.ok()) return st;
  return ReadBandwidth{static_cast<double>(done) / secs, done, secs};
}

}  // namespace tierlm::io
