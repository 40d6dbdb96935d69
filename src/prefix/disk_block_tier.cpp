#include "prefix/disk_block_tier.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>

#include "io/read_thread_pool.h"
#include "prefix/block_record.h"
#include "prefix/disk_tier_format.h"

namespace tierlm::prefix {
namespace {

constexpr const char* kIndexName = "index";
constexpr const char* kIndexTmpName = "index.tmp";
constexpr const char* kLockName = "lock";
constexpr const char* kSegmentPrefix = "segment-";
constexpr uint64_t kMinIndexBytes = 64ull << 10;
constexpr uint64_t kMaxIndexBytes = 256ull << 20;
constexpr uint64_t kMinSegmentBytes = 16ull << 10;
constexpr uint64_t kMaxIndexFileRead = 1ull << 30;  // a bigger "index" is not ours

std::string Errno(int err) { return std::strerror(err); }

// The generation of a segment file's name, or nothing when the name is not a segment's.
std::optional<uint64_t> ParseSegmentName(const std::string& name) {
  const std::string prefix = kSegmentPrefix;
  if (name.size() <= prefix.size() || name.size() > prefix.size() + 20 || name.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  uint64_t v = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  if (v == 0) return std::nullopt;
  return v;
}

// 0, or errno; -1 when the file ends first.
int PreadAll(int fd, uint8_t* dst, uint64_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, dst, static_cast<size_t>(std::min<uint64_t>(n, 1u << 30)), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return -1;
    dst += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return 0;
}

Status PwriteAll(int fd, const std::string& path, const uint8_t* src, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, src, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : ENOSPC;
      const std::string m = path + ": write of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                            " failed: " + Errno(err);
      return err == ENOSPC ? Status::ResourceExhausted(m) : Status::IoError(m);
    }
    src += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

// Makes renames and creations in `dir` durable (best effort: some file systems refuse).
void SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

uint64_t RandomNonce() {
  std::random_device rd;
  const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return ((static_cast<uint64_t>(rd()) << 32) | rd()) ^ (t * 0x9e3779b97f4a7c15ull);
}

}  // namespace

Result<DiskTierLayout> ComputeDiskTierLayout(uint64_t capacity_bytes, int32_t n_segments) {
  if (n_segments < 2 || n_segments > 4096)
    return Status::InvalidArgument("disk tier: " + std::to_string(n_segments) + " segments; 2 to 4096 allowed");
  DiskTierLayout l;
  l.index_max_bytes = std::clamp(capacity_bytes / 256, kMinIndexBytes, kMaxIndexBytes);
  const uint64_t reserve = 2 * l.index_max_bytes;
  const uint64_t min_capacity = reserve + static_cast<uint64_t>(n_segments) * kMinSegmentBytes;
  if (capacity_bytes < min_capacity)
    return Status::InvalidArgument("disk tier: capacity of " + std::to_string(capacity_bytes) + " bytes is too small for " +
                                   std::to_string(n_segments) + " segments (at least " + std::to_string(min_capacity) +
                                   " bytes)");
  l.segment_bytes = (capacity_bytes - reserve) / static_cast<uint64_t>(n_segments) / 4096 * 4096;
  l.max_entries = (l.index_max_bytes - IndexFileBytes(static_cast<uint64_t>(n_segments), 0)) / kIndexEntryBytes;
  l.max_record_bytes = l.segment_bytes - kSegmentHeaderBytes;
  return l;
}

DiskBlockTier::SegmentFile::~SegmentFile() {
  if (fd >= 0) ::close(fd);
}

DiskBlockTier::DiskBlockTier(const DiskTierOptions& options, const DiskTierLayout& layout, int lock_fd)
    : options_(options), layout_(layout), lock_fd_(lock_fd), inject_disk_bytes_(options.inject_disk_bytes) {}

Result<std::unique_ptr<DiskBlockTier>> DiskBlockTier::Open(const DiskTierOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("disk tier: no directory given");
  TIERLM_ASSIGN_OR_RETURN(const DiskTierLayout layout,
                          ComputeDiskTierLayout(options.capacity_bytes, options.n_segments));
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return Status::IoError(options.dir + ": cannot create the disk tier's directory: " + ec.message());
  if (!std::filesystem::is_directory(options.dir, ec))
    return Status::IoError(options.dir + ": not a directory; the disk tier needs one");
  const std::string lock_path = options.dir + "/" + kLockName;
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError(lock_path + ": cannot open the disk tier's lock file: " + Errno(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK)
      return Status::IoError(options.dir + ": in use by another disk tier (" + lock_path +
                             " is locked); each process needs a directory of its own");
    return Status::IoError(lock_path + ": flock failed: " + Errno(err));
  }
  std::unique_ptr<DiskBlockTier> tier(new DiskBlockTier(options, layout, fd));
  TIERLM_RETURN_IF_ERROR(tier->Recover());
  tier->Start();
  return tier;
}

DiskBlockTier::~DiskBlockTier() {
  if (started_) {
    Flush();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    writer_.join();
    readers_.reset();
    // Seal: the active segment's bytes on disk, then an index that covers every segment.
    if (active_ != 0) {
      const auto it = segments_.find(active_);
      if (it != segments_.end()) (void)::fsync(it->second.file->fd);
    }
    (void)WriteIndex();
  }
  segments_.clear();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string DiskBlockTier::SegmentPath(uint64_t generation) const {
  char name[40];
  std::snprintf(name, sizeof(name), "%s%012llu", kSegmentPrefix, static_cast<unsigned long long>(generation));
  return options_.dir + "/" + name;
}

Status DiskBlockTier::Recover() {
  namespace fs = std::filesystem;
  const std::string tmp_path = options_.dir + "/" + kIndexTmpName;
  if (::unlink(tmp_path.c_str()) != 0 && errno != ENOENT)
    return Status::IoError(tmp_path + ": cannot remove a stale temporary index: " + Errno(errno));

  std::vector<uint64_t> generations;
  std::error_code ec;
  for (fs::directory_iterator it(options_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (auto g = ParseSegmentName(it->path().filename().string())) generations.push_back(*g);
  }
  if (ec) return Status::IoError(options_.dir + ": cannot list the disk tier's directory: " + ec.message());
  std::sort(generations.begin(), generations.end());

  // The index, when it is there and whole.
  std::optional<IndexFile> index;
  const std::string index_path = options_.dir + "/" + kIndexName;
  if (const int fd = ::open(index_path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    open_info_.index_found = true;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      open_info_.index_problem = "fstat failed: " + Errno(errno);
    } else if (static_cast<uint64_t>(st.st_size) > kMaxIndexFileRead) {
      open_info_.index_problem = std::to_string(st.st_size) + " bytes, too large to be an index";
    } else {
      std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
      const int err = PreadAll(fd, bytes.data(), bytes.size(), 0);
      if (err != 0) {
        open_info_.index_problem = err < 0 ? "shorter than its size" : "read failed: " + Errno(err);
      } else if (auto parsed = ParseIndex(bytes); parsed.ok()) {
        index = std::move(parsed).value();
        open_info_.index_valid = true;
        index_file_bytes_ = bytes.size();
      } else {
        open_info_.index_problem = parsed.status().message();
      }
    }
    ::close(fd);
  } else if (errno != ENOENT) {
    open_info_.index_found = true;
    open_info_.index_problem = "cannot open: " + Errno(errno);
  }
  // An index that cannot be used goes now, so that it never outlives a failed rewrite.
  if (open_info_.index_found && !open_info_.index_valid && ::unlink(index_path.c_str()) != 0 && errno != ENOENT)
    return Status::IoError(index_path + ": cannot remove an unusable index (" + open_info_.index_problem +
                           "): " + Errno(errno));

  auto insert = [&](const Key& key, const Location& loc) {
    auto [it, inserted] = index_.try_emplace(key, loc);
    // A block in two places was re-appended: the later copy is the one to keep.
    if (!inserted && (loc.generation > it->second.generation ||
                      (loc.generation == it->second.generation && loc.offset > it->second.offset)))
      it->second = loc;
    segments_[loc.generation].keys.push_back(key);
  };

  std::vector<uint64_t> covered;
  uint64_t newest_valid_end = 0;  // of the newest segment, when it was scanned
  for (const uint64_t gen : generations) {
    const std::string path = SegmentPath(gen);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Status::IoError(path + ": cannot open a disk tier segment: " + Errno(errno));
    auto file = std::make_shared<SegmentFile>();
    file->path = path;
    file->fd = fd;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return Status::IoError(path + ": fstat failed: " + Errno(errno));
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    uint8_t hbuf[kSegmentHeaderBytes];
    auto header = size >= kSegmentHeaderBytes && PreadAll(fd, hbuf, kSegmentHeaderBytes, 0) == 0
                      ? DecodeSegmentHeader(std::span<const uint8_t>(hbuf, kSegmentHeaderBytes))
                      : Result<SegmentHeader>(Status::Corruption("shorter than its header"));
    // A segment that cannot be read, or is larger than a segment may now be, goes whole.
    if (!header.ok() || header->generation != gen || size > layout_.segment_bytes) {
      file.reset();
      if (::unlink(path.c_str()) != 0) return Status::IoError(path + ": cannot remove: " + Errno(errno));
      ++open_info_.segments_deleted;
      continue;
    }
    ++open_info_.segments_found;
    Segment& seg = segments_[gen];
    seg.nonce = header->nonce;
    seg.bytes = size;
    seg.file = file;
    segment_bytes_total_ += size;
    const IndexSegment* listed = nullptr;
    if (index) {
      for (const IndexSegment& s : index->segments)
        if (s.generation == gen) listed = &s;
    }
    if (listed && listed->nonce == seg.nonce && listed->bytes == size) {
      covered.push_back(gen);
      newest_valid_end = size;
      continue;
    }
    ++open_info_.segments_scanned;
    const SegmentScan scan = ScanSegment(size, [fd](uint64_t offset, size_t n, uint8_t* dst) {
      return PreadAll(fd, dst, n, offset) == 0;
    });
    for (const SegmentRecord& r : scan.records) insert({r.identity, r.hash}, {gen, r.offset, r.bytes});
    newest_valid_end = scan.header.ok() ? scan.valid_end : kSegmentHeaderBytes;
  }
  if (index) {
    for (const IndexEntry& e : index->entries)
      if (std::binary_search(covered.begin(), covered.end(), e.generation))
        insert({e.identity, e.hash}, {e.generation, e.offset, e.bytes});
  }
  next_generation_ = std::max<uint64_t>(index ? index->next_generation : 1, 1);
  if (!segments_.empty()) next_generation_ = std::max(next_generation_, segments_.rbegin()->first + 1);

  // Whatever lies beyond the bounds (a previous run with other options) goes, oldest first.
  while (!segments_.empty() && (segments_.size() > static_cast<size_t>(options_.n_segments) ||
                                index_.size() > layout_.max_entries)) {
    EvictOldest();
    ++open_info_.segments_deleted;
  }
  // The newest segment carries on as the active one, cut back to its last whole record.
  if (!segments_.empty()) {
    auto& [gen, seg] = *segments_.rbegin();
    if (newest_valid_end < seg.bytes) {
      if (::ftruncate(seg.file->fd, static_cast<off_t>(newest_valid_end)) == 0) {
        open_info_.bytes_cut = seg.bytes - newest_valid_end;
        segment_bytes_total_ -= open_info_.bytes_cut;
        seg.bytes = newest_valid_end;
      } else {
        active_full_ = true;
      }
    }
    if (seg.bytes < layout_.segment_bytes) active_ = gen;
  }
  open_info_.blocks = index_.size();
  if (!open_info_.index_valid || open_info_.segments_scanned > 0 || open_info_.segments_deleted > 0 ||
      open_info_.bytes_cut > 0)
    (void)WriteIndex();  // so that the next Open need not scan again; a failure is counted
  return Status::Ok();
}

void DiskBlockTier::Start() {
  readers_ = std::make_unique<io::ReadThreadPool>(kReadAhead);
  writer_ = std::thread([this] { WriterLoop(); });
  started_ = true;
}

size_t DiskBlockTier::Contains(uint64_t identity, std::span<const uint64_t> hashes) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  while (n < hashes.size() && index_.count(Key{identity, hashes[n]}) != 0) ++n;
  return n;
}

bool DiskBlockTier::IsOldLocked(uint64_t generation) const {
  // Rollovers until the segment is deleted: one per segment older than it, plus one per
  // segment that can still be added before eviction starts, plus its own.
  uint64_t rank = 0;
  for (const auto& [gen, seg] : segments_) {
    if (gen >= generation) break;
    ++rank;
  }
  const uint64_t n = static_cast<uint64_t>(options_.n_segments);
  const uint64_t room = n > segments_.size() ? n - segments_.size() : 0;
  return room + rank + 1 <= n / 2;
}

void DiskBlockTier::RemoveIfAtLocked(const Key& key, const Location& at) {
  const auto it = index_.find(key);
  if (it != index_.end() && it->second == at) index_.erase(it);
}

size_t DiskBlockTier::Load(uint64_t identity, std::span<const uint64_t> hashes, uint64_t payload_bytes,
                           const Sink& sink) {
  const auto t0 = std::chrono::steady_clock::now();
  struct Slot {
    std::vector<uint8_t> buf;
    Location loc;
    bool old = false;
    bool done = false;
    int err = 0;
  };
  constexpr size_t kSlots = kReadAhead + 1;  // kReadAhead in flight while the sink has one
  Slot slots[kSlots];
  std::mutex done_mu;
  std::condition_variable done_cv;
  size_t in_flight = 0;
  size_t submitted = 0;     // blocks [0, submitted) were found in the index and are being read
  bool chain_ended = false;  // block `submitted` is not in the index

  auto submit_next = [&] {
    if (chain_ended || submitted >= hashes.size()) return;
    Slot& slot = slots[submitted % kSlots];
    std::shared_ptr<SegmentFile> file;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto it = index_.find(Key{identity, hashes[submitted]});
      const auto seg = it == index_.end() ? segments_.end() : segments_.find(it->second.generation);
      if (seg == segments_.end()) {
        chain_ended = true;
        return;
      }
      slot.loc = it->second;
      slot.old = IsOldLocked(slot.loc.generation);
      file = seg->second.file;
    }
    slot.buf.resize(slot.loc.bytes);
    slot.done = false;
    slot.err = 0;
    {
      std::lock_guard<std::mutex> lock(done_mu);
      ++in_flight;
    }
    readers_->Run([&slot, &done_mu, &done_cv, &in_flight, file] {
      const int err = PreadAll(file->fd, slot.buf.data(), slot.loc.bytes, slot.loc.offset);
      std::lock_guard<std::mutex> lock(done_mu);
      slot.err = err;
      slot.done = true;
      --in_flight;
      done_cv.notify_all();
    });
    ++submitted;
  };

  for (int i = 0; i < kReadAhead; ++i) submit_next();
  size_t taken = 0;
  uint64_t lookups = 0, misses = 0, corrupt = 0, errors = 0, bytes = 0;
  std::vector<std::pair<Key, Location>> hot;  // hits in old segments, to re-append
  for (size_t i = 0; i < hashes.size(); ++i) {
    ++lookups;
    if (i >= submitted) {  // not in the index
      ++misses;
      break;
    }
    submit_next();  // block i + kReadAhead, read while the sink copies block i
    Slot& slot = slots[i % kSlots];
    {
      std::unique_lock<std::mutex> lock(done_mu);
      done_cv.wait(lock, [&] { return slot.done; });
    }
    const Key key{identity, hashes[i]};
    if (slot.err > 0) {  // an I/O error: a miss, the block stays indexed
      ++errors;
      ++misses;
      break;
    }
    auto payload = slot.err < 0 ? Result<std::span<const uint8_t>>(Status::Corruption("record cut short"))
                                : CheckRecord(slot.buf, identity, hashes[i], payload_bytes);
    if (!payload.ok()) {
      ++corrupt;
      ++misses;
      std::lock_guard<std::mutex> lock(mu_);
      RemoveIfAtLocked(key, slot.loc);
      break;
    }
    if (!sink(i, *payload)) break;
    ++taken;
    bytes += payload->size();
    if (slot.old) hot.emplace_back(key, slot.loc);
  }
  {
    std::unique_lock<std::mutex> lock(done_mu);
    done_cv.wait(lock, [&] { return in_flight == 0; });  // the slots are ours until then
  }
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.lookups += lookups;
    counters_.hits += taken;
    counters_.misses += misses;
    counters_.corrupt += corrupt;
    counters_.errors += errors;
    counters_.bytes_read += bytes;
    for (const auto& [key, loc] : hot) {
      const auto it = index_.find(key);
      if (it == index_.end() || !(it->second == loc) || queued_keys_.count(key) != 0 ||
          queued_bytes_ + loc.bytes > options_.max_queued_bytes)
        continue;
      Task task;
      task.key = key;
      task.from = loc;
      task.queued_bytes = loc.bytes;
      queued_bytes_ += loc.bytes;
      queued_keys_.insert(key);
      queue_.push_back(std::move(task));
      queued = true;
    }
    counters_.load_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (queued) work_cv_.notify_one();
  return taken;
}

void DiskBlockTier::Store(uint64_t identity, uint64_t hash, std::vector<uint8_t> payload) {
  const Key key{identity, hash};
  const uint64_t n = payload.size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.count(key) != 0 || queued_keys_.count(key) != 0) return;  // held already
    if (n > layout_.max_record_bytes - kRecordHeaderBytes || queued_bytes_ + n > options_.max_queued_bytes) {
      ++counters_.dropped;
      return;
    }
    Task task;
    task.key = key;
    task.payload = std::move(payload);
    task.queued_bytes = n;
    queued_bytes_ += n;
    queued_keys_.insert(key);
    queue_.push_back(std::move(task));
  }
  work_cv_.notify_one();
}

void DiskBlockTier::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !writer_busy_; });
}

TierCounters DiskBlockTier::Counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  TierCounters c = counters_;
  c.resident_bytes = segment_bytes_total_ + index_file_bytes_;
  c.resident_blocks = index_.size();
  return c;
}

void DiskBlockTier::WriterLoop() {
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      writer_busy_ = true;
    }
    Process(task);
    std::lock_guard<std::mutex> lock(mu_);
    queued_bytes_ -= task.queued_bytes;
    queued_keys_.erase(task.key);
    writer_busy_ = false;
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

void DiskBlockTier::Process(Task& task) {
  if (task.from.bytes == 0) {  // a Store
    Status st = MakeRoom(kRecordHeaderBytes + task.payload.size());
    if (st.ok()) {
      uint8_t header[kRecordHeaderBytes];
      EncodeRecordHeader(task.key.identity, task.key.hash, task.payload, header);
      st = Append(task.key, header, task.payload).status();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (st.ok()) {
      ++counters_.stored;
    } else {
      ++counters_.dropped;
      ++counters_.errors;
    }
    return;
  }
  // A re-append of a hot block from an old segment: read it back, check it, append it.
  Status st = MakeRoom(task.from.bytes);
  std::shared_ptr<SegmentFile> file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!st.ok()) {
      ++counters_.errors;
      return;
    }
    const auto it = index_.find(task.key);
    const auto seg = segments_.find(task.from.generation);
    if (it == index_.end() || !(it->second == task.from) || seg == segments_.end()) return;  // moved or gone
    file = seg->second.file;
  }
  std::vector<uint8_t> record(task.from.bytes);
  const int err = PreadAll(file->fd, record.data(), record.size(), task.from.offset);
  const bool intact = err == 0 && CheckRecord(record, task.key.identity, task.key.hash, 0).ok();
  if (!intact) {
    std::lock_guard<std::mutex> lock(mu_);
    if (err > 0) {
      ++counters_.errors;
    } else {
      ++counters_.corrupt;
      RemoveIfAtLocked(task.key, task.from);
    }
    return;
  }
  if (!Append(task.key, record.data(), std::span<const uint8_t>(record).subspan(kRecordHeaderBytes)).ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.errors;
  }
}

Status DiskBlockTier::MakeRoom(uint64_t bytes) {
  if (bytes > layout_.max_record_bytes)
    return Status::ResourceExhausted("disk tier: a record of " + std::to_string(bytes) + " bytes is larger than a segment");
  // The index stays within its reserve: at most max_entries blocks.
  for (;;) {
    size_t entries = 0, count = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      entries = index_.size();
      count = segments_.size();
    }
    if (entries < layout_.max_entries) break;
    if (count > (active_ != 0 ? 1u : 0u)) {
      EvictOldest();
    } else {
      TIERLM_RETURN_IF_ERROR(Roll());
    }
  }
  uint64_t end = 0;
  if (active_ != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    end = segments_.at(active_).bytes;
  }
  if (active_ == 0 || active_full_ || end + bytes > layout_.segment_bytes) TIERLM_RETURN_IF_ERROR(Roll());
  return Status::Ok();
}

Status DiskBlockTier::Roll() {
  if (active_ != 0) {
    std::shared_ptr<SegmentFile> file;
    {
      std::lock_guard<std::mutex> lock(mu_);
      file = segments_.at(active_).file;
    }
    if (::fsync(file->fd) != 0) {
      std::lock_guard<std::mutex> lock(mu_);
      ++counters_.errors;
    }
    active_ = 0;
  }
  active_full_ = false;
  for (;;) {
    size_t count = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      count = segments_.size();
    }
    if (count < static_cast<size_t>(options_.n_segments)) break;
    EvictOldest();
  }
  TIERLM_RETURN_IF_ERROR(CreateSegment());
  (void)WriteIndex();  // a failure is counted; the next Open scans what the index misses
  return Status::Ok();
}

void DiskBlockTier::EvictOldest() {
  std::shared_ptr<SegmentFile> file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (segments_.empty()) return;
    const auto it = segments_.begin();
    for (const Key& key : it->second.keys) {
      const auto e = index_.find(key);
      if (e != index_.end() && e->second.generation == it->first) {
        index_.erase(e);
        ++counters_.evicted;
      }
    }
    segment_bytes_total_ -= it->second.bytes;
    if (active_ == it->first) active_ = 0;
    file = std::move(it->second.file);
    segments_.erase(it);
  }
  // Reads in flight keep the file (by its descriptor) until they end.
  if (::unlink(file->path.c_str()) != 0 && errno != ENOENT) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.errors;
  }
}

Status DiskBlockTier::CreateSegment() {
  const uint64_t gen = next_generation_++;
  auto file = std::make_shared<SegmentFile>();
  file->path = SegmentPath(gen);
  file->fd = ::open(file->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (file->fd < 0) return Status::IoError(file->path + ": cannot create a disk tier segment: " + Errno(errno));
  const SegmentHeader header{gen, RandomNonce()};
  uint8_t bytes[kSegmentHeaderBytes];
  EncodeSegmentHeader(header, bytes);
  if (const Status st = WriteSegmentBytes(*file, 0, bytes, sizeof(bytes), nullptr, 0); !st.ok()) {
    (void)::unlink(file->path.c_str());
    return st;
  }
  std::lock_guard<std::mutex> lock(mu_);
  Segment& seg = segments_[gen];
  seg.nonce = header.nonce;
  seg.bytes = kSegmentHeaderBytes;
  seg.file = std::move(file);
  segment_bytes_total_ += kSegmentHeaderBytes;
  active_ = gen;
  return Status::Ok();
}

Status DiskBlockTier::WriteSegmentBytes(SegmentFile& file, uint64_t offset, const uint8_t* a, size_t a_bytes,
                                        const uint8_t* b, size_t b_bytes) {
  // The injected disk holds `limit` bytes of segments: a write past it puts what fits.
  uint64_t used = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    used = segment_bytes_total_;
  }
  const uint64_t limit = inject_disk_bytes_.load();
  uint64_t room = limit > used ? limit - used : 0;
  const uint64_t total = a_bytes + b_bytes;
  const size_t a_put = static_cast<size_t>(std::min<uint64_t>(a_bytes, room));
  TIERLM_RETURN_IF_ERROR(PwriteAll(file.fd, file.path, a, a_put, offset));
  room -= a_put;
  const size_t b_put = static_cast<size_t>(std::min<uint64_t>(b_bytes, room));
  if (b_put > 0) TIERLM_RETURN_IF_ERROR(PwriteAll(file.fd, file.path, b, b_put, offset + a_bytes));
  if (a_put + b_put < total)
    return Status::ResourceExhausted(file.path + ": write of " + std::to_string(total) + " bytes at offset " +
                                     std::to_string(offset) + " failed: " + Errno(ENOSPC) + " (injected)");
  return Status::Ok();
}

Result<uint64_t> DiskBlockTier::Append(const Key& key, const uint8_t* header, std::span<const uint8_t> body) {
  std::shared_ptr<SegmentFile> file;
  uint64_t offset = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Segment& seg = segments_.at(active_);
    file = seg.file;
    offset = seg.bytes;
  }
  const uint64_t n = kRecordHeaderBytes + body.size();
  const Status st = WriteSegmentBytes(*file, offset, header, kRecordHeaderBytes, body.data(), body.size());
  if (!st.ok()) {
    // Cut the torn record off, so that the next one follows the last whole record. When the
    // cut fails the segment is sealed as it is (a scan stops at the torn record).
    if (::ftruncate(file->fd, static_cast<off_t>(offset)) != 0) {
      active_full_ = true;
      struct stat sb {};
      if (::fstat(file->fd, &sb) == 0 && static_cast<uint64_t>(sb.st_size) > offset) {
        std::lock_guard<std::mutex> lock(mu_);
        Segment& seg = segments_.at(active_);
        const uint64_t size = std::min<uint64_t>(static_cast<uint64_t>(sb.st_size), layout_.segment_bytes);
        segment_bytes_total_ += size - seg.bytes;
        seg.bytes = size;
      }
    }
    return st;
  }
  std::lock_guard<std::mutex> lock(mu_);
  Segment& seg = segments_.at(active_);
  seg.bytes = offset + n;
  segment_bytes_total_ += n;
  seg.keys.push_back(key);
  index_[key] = Location{active_, offset, n};
  counters_.bytes_written += n;
  return offset;
}

Status DiskBlockTier::WriteIndex() {
  IndexFile index;
  {
    std::lock_guard<std::mutex> lock(mu_);
    index.next_generation = next_generation_;
    index.segments.reserve(segments_.size());
    for (const auto& [gen, seg] : segments_) index.segments.push_back({gen, seg.nonce, seg.bytes});
    index.entries.reserve(index_.size());
    for (const auto& [key, loc] : index_)
      index.entries.push_back({key.identity, key.hash, loc.generation, loc.offset, loc.bytes});
  }
  const std::vector<uint8_t> bytes = EncodeIndex(index);
  const std::string tmp = options_.dir + "/" + kIndexTmpName, path = options_.dir + "/" + kIndexName;
  Status st;
  if (bytes.size() > layout_.index_max_bytes) {
    st = Status::Internal(path + ": index of " + std::to_string(bytes.size()) + " bytes exceeds its reserve of " +
                          std::to_string(layout_.index_max_bytes));
  } else if (const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); fd < 0) {
    st = Status::IoError(tmp + ": cannot create: " + Errno(errno));
  } else {
    st = PwriteAll(fd, tmp, bytes.data(), bytes.size(), 0);
    if (st.ok() && ::fsync(fd) != 0) st = Status::IoError(tmp + ": fsync failed: " + Errno(errno));
    if (::close(fd) != 0 && st.ok()) st = Status::IoError(tmp + ": close failed: " + Errno(errno));
    if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
      st = Status::IoError(path + ": rename from " + tmp + " failed: " + Errno(errno));
  }
  if (!st.ok()) {
    (void)::unlink(tmp.c_str());
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.errors;
    return st;
  }
  SyncDir(options_.dir);  // the rename, and the segments created and deleted before it
  std::lock_guard<std::mutex> lock(mu_);
  index_file_bytes_ = bytes.size();
  return Status::Ok();
}

}  // namespace tierlm::prefix
