// DiskBlockTier: the local-disk BlockTier, a persistent KV prefix cache that survives
// restarts (and kill -9) within a fixed size bound.
//
// Layout. One directory holds at most n_segments segment files, the index, the index's
// temporary copy while it is being replaced, and a lock file: a small fixed number of files
// whatever the number of blocks. The format of segments and index: prefix/disk_tier_format.h.
//
// Size bound. The index of at most `max_entries` blocks takes at most `index_max_bytes`;
// twice that is reserved (the old index and its replacement coexist until the rename), and
// the rest of capacity_bytes is split into n_segments equal segments:
//   segment_bytes = (capacity_bytes - 2 * index_max_bytes) / n_segments, rounded down to 4 KiB
//   index_max_bytes = clamp(capacity_bytes / 256, 64 KiB, 256 MiB)
// A segment never grows past segment_bytes, there are never more than n_segments, and the
// tier never indexes more than max_entries blocks, so the directory never holds more than
// capacity_bytes. A block whose record is larger than a segment is refused (dropped).
//
// Writes. Log-structured: Store only moves the payload into a queue (bounded by
// max_queued_bytes; beyond it the block is dropped) and returns. A background writer appends
// each record (prefix/block_record.h) to the active segment. When the next record does not
// fit, the active segment is sealed (fsync), the oldest segment is deleted whole if
// n_segments exist (its blocks are counted as evicted), a new segment is started, and the
// index is rewritten (temporary file, fsync, rename, fsync of the directory). Eviction is
// therefore FIFO by segment; to approximate LRU, a block that Load hands over from one of the
// segments that will be deleted within the next n_segments / 2 rollovers is re-appended by
// the writer to the active segment, so blocks in use keep moving to the head and survive
// while unused ones age out. (The old copy stays as dead bytes until its segment goes; re-
// appends count in bytes_written, not in stored.) A write that fails (ENOSPC, an I/O error)
// drops its block and counts it (errors, dropped); the segment is cut back to the last whole
// record and the tier carries on.
//
// Reads. Contains and Load consult the in-memory index (one mutex). Load reads up to
// kReadAhead records ahead on a small thread pool while the sink copies earlier ones, checks
// each with CheckRecord (identity, hash, payload size, checksum) and stops at the first block
// that fails; a record that fails its check is removed from the index and counted (corrupt,
// misses). No byte reaches the sink unchecked. I/O is plain buffered pread / pwrite (records
// are packed back to back, not aligned for O_DIRECT); the active segment is fsynced when it is
// sealed and at close, so a kill -9 loses nothing written, and a power cut at most the active
// segment's unsynced tail, which the next Open cuts off.
//
// Recovery (Open). The index is read and checked whole; it is trusted for a segment only if
// that segment's generation, nonce and size match the file. Every other segment (the active
// one after a crash, any segment after a lost or corrupt index) is scanned: its record headers
// are read up to the first one that is torn or does not decode. The newest segment, when it
// has room, becomes the active one again, cut back to the end of its last whole record. A
// segment with a bad header is deleted. Whatever the previous run (or other options) left
// beyond the bounds is evicted oldest first. Nothing at Open fails for damaged contents: it
// ends in fewer blocks.
//
// One process per directory: Open takes flock(LOCK_EX | LOCK_NB) on "lock" and fails with
// an IoError saying the directory is in use when another tier holds it.
//
// Threads: Contains, Load, Store and Flush from one caller thread at a time; the writer and
// the read-ahead threads are the tier's own; Counters from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/status.h"
#include "prefix/block_tier.h"

namespace tierlm::io {
class ReadThreadPool;
}

namespace tierlm::prefix {

struct DiskTierOptions {
  std::string dir;                        // created if missing (mkdir -p)
  uint64_t capacity_bytes = 0;            // bound on everything the tier puts in dir
  int32_t n_segments = 8;                 // segment files the capacity is split into (2 .. 4096)
  size_t max_queued_bytes = 256u << 20;   // Store drops blocks beyond this many bytes waiting
  // Fault injection for tests: the disk "holds" only this many bytes of segment data; a
  // write past it writes what fits and fails as ENOSPC would. UINT64_MAX: the real disk only.
  uint64_t inject_disk_bytes = std::numeric_limits<uint64_t>::max();
};

// How capacity_bytes is split (see the header comment).
struct DiskTierLayout {
  uint64_t segment_bytes = 0;     // the most bytes one segment file holds, header included
  uint64_t index_max_bytes = 0;   // the most bytes the index file takes
  uint64_t max_entries = 0;       // the most blocks the tier indexes
  uint64_t max_record_bytes = 0;  // the largest record a segment takes
};
// The layout for these options, or InvalidArgument naming what is too small.
Result<DiskTierLayout> ComputeDiskTierLayout(uint64_t capacity_bytes, int32_t n_segments);

// What Open found in the directory.
struct DiskTierOpenInfo {
  bool index_found = false;      // an index file was there
  bool index_valid = false;      // and it passed its checks
  std::string index_problem;     // why it was not used, when it was there and invalid
  int32_t segments_found = 0;    // segment files with a valid header
  int32_t segments_scanned = 0;  // of those, read by a scan of their records (not covered by the index)
  int32_t segments_deleted = 0;  // segment files removed: a bad header, or beyond the bounds
  uint64_t blocks = 0;           // blocks indexed after Open
  uint64_t bytes_cut = 0;        // torn bytes cut from the tail of the active segment
};

class DiskBlockTier : public BlockTier {
 public:
  // The most records Load keeps in flight ahead of the sink.
  static constexpr int kReadAhead = 4;

  static Result<std::unique_ptr<DiskBlockTier>> Open(const DiskTierOptions& options);
  // Flushes the queue, seals the active segment and writes the index.
  ~DiskBlockTier() override;
  DiskBlockTier(const DiskBlockTier&) = delete;
  DiskBlockTier& operator=(const DiskBlockTier&) = delete;

  std::string name() const override { return "disk"; }
  size_t Contains(uint64_t identity, std::span<const uint64_t> hashes) override;
  size_t Load(uint64_t identity, std::span<const uint64_t> hashes, uint64_t payload_bytes, const Sink& sink) override;
  void Store(uint64_t identity, uint64_t hash, std::vector<uint8_t> payload) override;
  void Flush() override;
  TierCounters Counters() const override;

  const DiskTierLayout& layout() const { return layout_; }
  const DiskTierOpenInfo& open_info() const { return open_info_; }
  // Fault injection for tests: changes options.inject_disk_bytes (space "returns").
  void SetInjectDiskBytes(uint64_t bytes) { inject_disk_bytes_.store(bytes); }

 private:
  struct Key {
    uint64_t identity = 0;
    uint64_t hash = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.hash ^ (k.identity * 0x9e3779b97f4a7c15ull)); }
  };
  struct Location {
    uint64_t generation = 0;
    uint64_t offset = 0;
    uint64_t bytes = 0;
    bool operator==(const Location&) const = default;
  };
  // An open segment file; shared with reads in flight, so a segment deleted by eviction
  // stays readable (by its descriptor) until the last read of it ends.
  struct SegmentFile {
    std::string path;
    int fd = -1;
    ~SegmentFile();
  };
  struct Segment {
    uint64_t nonce = 0;
    uint64_t bytes = 0;                // the file's size
    std::shared_ptr<SegmentFile> file;
    std::vector<Key> keys;             // blocks appended to it (some may have moved or gone since)
  };
  struct Task {
    Key key;
    std::vector<uint8_t> payload;  // a Store
    Location from;                 // a re-append (payload empty, from.bytes > 0)
    uint64_t queued_bytes = 0;
  };

  DiskBlockTier(const DiskTierOptions& options, const DiskTierLayout& layout, int lock_fd);
  Status Recover();
  void Start();
  void WriterLoop();
  void Process(Task& task);
  // Makes room in the active segment for a record of `bytes`: rolls over and evicts.
  Status MakeRoom(uint64_t bytes);
  Status Roll();
  void EvictOldest();
  Status CreateSegment();
  // Appends a record (its header, then body) to the active segment and indexes it there;
  // returns its offset. A failed write is cut back off the segment.
  Result<uint64_t> Append(const Key& key, const uint8_t* header, std::span<const uint8_t> body);
  Status WriteSegmentBytes(SegmentFile& file, uint64_t offset, const uint8_t* a, size_t a_bytes, const uint8_t* b,
                           size_t b_bytes);
  Status WriteIndex();
  std::string SegmentPath(uint64_t generation) const;
  // Under mu_: whether a block in this segment will be deleted within n_segments / 2 rollovers.
  bool IsOldLocked(uint64_t generation) const;
  void RemoveIfAtLocked(const Key& key, const Location& at);

  const DiskTierOptions options_;
  const DiskTierLayout layout_;
  int lock_fd_ = -1;
  DiskTierOpenInfo open_info_;
  std::atomic<uint64_t> inject_disk_bytes_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // the writer waits for tasks
  std::condition_variable idle_cv_;   // Flush waits for an empty queue
  std::unordered_map<Key, Location, KeyHash> index_;
  std::map<uint64_t, Segment> segments_;  // by generation, oldest first
  std::deque<Task> queue_;
  std::unordered_set<Key, KeyHash> queued_keys_;
  uint64_t queued_bytes_ = 0;
  bool writer_busy_ = false;
  bool stop_ = false;
  uint64_t segment_bytes_total_ = 0;  // sum of segments_[*].bytes
  uint64_t index_file_bytes_ = 0;
  TierCounters counters_;

  // Owned by the writer thread (and by Open / the destructor when it is not running).
  uint64_t next_generation_ = 1;
  uint64_t active_ = 0;        // generation of the active segment; 0: none
  bool active_full_ = false;   // a failed cut-back: start a new segment before the next append
  bool started_ = false;       // Recover succeeded and the threads run
  std::thread writer_;
  std::unique_ptr<io::ReadThreadPool> readers_;
};

}  // namespace tierlm::prefix
