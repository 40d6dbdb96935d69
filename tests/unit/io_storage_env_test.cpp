// StorageEnv implementations: POSIX (O_DIRECT, io_uring / threads), memory, fault injection.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/clock.h"
#include "io/fault_injection_env.h"
#include "io/mem_storage_env.h"
#include "io/posix_storage_env.h"

namespace tierlm::io {
namespace {

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::string TempPath(const std::string& tag) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/tierlm_io_" + tag + "_" + std::to_string(::getpid());
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

struct AlignedBuf {
  explicit AlignedBuf(size_t n) : p(static_cast<uint8_t*>(std::aligned_alloc(4096, AlignUp(n + 4096)))) {}
  ~AlignedBuf() { std::free(p); }
  uint8_t* p;
};

// Reads a spread of aligned and unaligned ranges, sync and async, and checks every byte.
void CheckReads(RandomAccessFile& f, const std::vector<uint8_t>& want) {
  const uint64_t n = want.size();
  const std::vector<std::pair<uint64_t, uint64_t>> ranges = {
      {0, 4096}, {4096, 8192}, {1, 10}, {4095, 2}, {100, 9000}, {8192, n - 8192}, {0, n}, {n - 1, 1}, {12288, 0}};
  AlignedBuf buf(n + 8192);
  for (auto [off, len] : ranges) {
    for (uint64_t shift : {uint64_t{0}, uint64_t{7}}) {  // dst alignment matching the offset, and not
      uint8_t* dst = buf.p + (off + shift) % 4096;
      ASSERT_TRUE(f.ReadAt(off, len, dst).ok()) << off << "+" << len;
      ASSERT_EQ(0, std::memcmp(dst, want.data() + off, len)) << off << "+" << len;
    }
  }
  // Async: many reads in flight at once into separate buffers.
  std::vector<AlignedBuf*> bufs;
  std::vector<ReadId> ids;
  for (size_t i = 0; i < ranges.size(); ++i) {
    bufs.push_back(new AlignedBuf(ranges[i].second + 8192));
    ReadRequest r{ranges[i].first, ranges[i].second, bufs.back()->p + ranges[i].first % 4096, {}, i};
    ids.push_back(f.Submit(r));
  }
  std::vector<ReadResult> done;
  ASSERT_TRUE(f.Wait(ids, -1, &done).ok());
  ASSERT_EQ(done.size(), ranges.size());
  for (const ReadResult& r : done) {
    const auto [off, len] = ranges[r.user_data];
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.bytes, len);
    EXPECT_EQ(0, std::memcmp(bufs[r.user_data]->p + off % 4096, want.data() + off, len));
  }
  for (auto* b : bufs) delete b;
  // Each result is delivered once.
  std::vector<ReadResult> again;
  EXPECT_EQ(f.Wait(ids, 0, &again).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(f.Poll().empty());
  // Past the end.
  EXPECT_EQ(f.ReadAt(n - 1, 2, buf.p).code(), StatusCode::kOutOfRange);
}

TEST(IoPosixEnv, ReadsEveryByteWithEachEngine) {
  const std::string path = TempPath("engines");
  const auto bytes = Pattern(5 * 4096 + 123, 1);
  WriteFile(path, bytes);
  for (AsyncEngine engine : {AsyncEngine::kAuto, AsyncEngine::kThreads}) {
    for (bool direct : {true, false}) {
      PosixEnvOptions o;
      o.engine = engine;
      o.direct_io = direct;
      PosixStorageEnv env(o);
      auto f = env.OpenForRandomRead(path);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      CheckReads(**f, bytes);
      const FileStats s = (*f)->stats();
      EXPECT_GT(s.reads, 0u);
      if (!direct) { EXPECT_FALSE(s.direct_io); }
      if (direct && s.direct_io) { EXPECT_GT(s.buffered_fragment_reads, 0u); }
      std::printf("engine %s direct %d note '%s'\n", s.engine.c_str(), s.direct_io, s.note.c_str());
    }
  }
  std::remove(path.c_str());
}

TEST(IoPosixEnv, DirectIoRefusedFallsBackAndSaysSo) {
  // /dev/shm is tmpfs, which refuses O_DIRECT on most kernels.
  const std::string path = "/dev/shm/tierlm_io_tmpfs_" + std::to_string(::getpid());
  const auto bytes = Pattern(3 * 4096, 2);
  WriteFile(path, bytes);
  PosixStorageEnv env;
  auto f = env.OpenForRandomRead(path);
  ASSERT_TRUE(f.ok());
  CheckReads(**f, bytes);
  const FileStats s = (*f)->stats();
  if (!s.direct_io) { EXPECT_NE(s.note.find("O_DIRECT"), std::string::npos) << s.note; }
  std::remove(path.c_str());
}

TEST(IoPosixEnv, DetectsTruncationAndReplacement) {
  const std::string path = TempPath("identity");
  const auto bytes = Pattern(4 * 4096, 3);
  WriteFile(path, bytes);
  PosixStorageEnv env;
  AlignedBuf buf(4096);
  {
    auto f = env.OpenForRandomRead(path);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->ReadAt(0, 4096, buf.p).ok());
    ASSERT_EQ(::truncate(path.c_str(), 4096), 0);
    Status st = (*f)->ReadAt(0, 4096, buf.p);
    EXPECT_EQ(st.code(), StatusCode::kCorruption);
    EXPECT_NE(st.message().find("changed since open"), std::string::npos) << st.ToString();
    // The async path reports it too, as a result.
    ReadId id = (*f)->Submit({0, 4096, buf.p, {}, 7});
    std::vector<ReadResult> done;
    ASSERT_TRUE((*f)->Wait({&id, 1}, -1, &done).ok());
    EXPECT_EQ(done.at(0).status.code(), StatusCode::kCorruption);
  }
  WriteFile(path, bytes);
  {
    auto f = env.OpenForRandomRead(path);
    ASSERT_TRUE(f.ok());
    const std::string other = path + ".new";
    WriteFile(other, Pattern(4 * 4096, 4));
    ASSERT_EQ(std::rename(other.c_str(), path.c_str()), 0);  // same size, new inode
    EXPECT_EQ((*f)->ReadAt(0, 4096, buf.p).code(), StatusCode::kCorruption);
  }
  std::remove(path.c_str());
  EXPECT_EQ(env.OpenForRandomRead(path).status().code(), StatusCode::kNotFound);
}

TEST(IoMemEnv, ReadsAndDetectsChanges) {
  MemStorageEnv env;
  const auto bytes = Pattern(3 * 4096 + 5, 5);
  env.WriteFile("m", bytes);
  auto f = env.OpenForRandomRead("m");
  ASSERT_TRUE(f.ok());
  CheckReads(**f, bytes);
  std::vector<uint8_t> b(10);
  ASSERT_TRUE(env.Truncate("m", 100).ok());
  EXPECT_EQ((*f)->ReadAt(0, 10, b.data()).code(), StatusCode::kCorruption);
  env.WriteFile("m", bytes);  // replaced: new identity even with the old bytes
  EXPECT_EQ((*f)->ReadAt(0, 10, b.data()).code(), StatusCode::kCorruption);
  auto g = env.OpenForRandomRead("m");
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE((*g)->ReadAt(0, 10, b.data()).ok());
  EXPECT_EQ(env.OpenForRandomRead("nope").status().code(), StatusCode::kNotFound);
}

TEST(IoFaultInjection, SeededOneInIsDeterministic) {
  MemStorageEnv mem;
  mem.WriteFile("f", Pattern(64 * 1024, 6));
  auto run = [&](uint64_t seed) {
    FaultInjectionEnv env(&mem);
    FaultSpec spec;
    spec.seed = seed;
    spec.error_one_in = 3;
    env.SetFaults(spec);
    auto f = env.OpenForRandomRead("f");
    std::vector<uint8_t> b(100);
    std::vector<bool> failed;
    for (int i = 0; i < 60; ++i) failed.push_back(!(*f)->ReadAt(i * 100, 100, b.data()).ok());
    return failed;
  };
  const auto a = run(42), b = run(42), c = run(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  const auto n = std::count(a.begin(), a.end(), true);
  EXPECT_GT(n, 5);
  EXPECT_LT(n, 40);
}

TEST(IoFaultInjection, RangeShortReadTruncationAndRecovery) {
  MemStorageEnv mem;
  const auto bytes = Pattern(16 * 1024, 7);
  mem.WriteFile("f", bytes);
  FaultInjectionEnv env(&mem);
  auto f = env.OpenForRandomRead("f");
  std::vector<uint8_t> b(4096);
  FaultSpec spec;
  spec.fail_begin = 5000;
  spec.fail_end = 5001;
  env.SetFaults(spec);
  EXPECT_TRUE((*f)->ReadAt(0, 4096, b.data()).ok());
  Status st = (*f)->ReadAt(4096, 4096, b.data());
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.message().find("offset 4096"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("injected"), std::string::npos);

  spec = {};
  spec.short_read_one_in = 1;
  env.SetFaults(spec);
  ReadId id = (*f)->Submit({0, 4096, b.data(), {}, 0});
  std::vector<ReadResult> done;
  ASSERT_TRUE((*f)->Wait({&id, 1}, -1, &done).ok());
  EXPECT_EQ(done[0].status.code(), StatusCode::kIoError);
  EXPECT_EQ(done[0].bytes, 2048u);

  spec = {};
  spec.truncate_at = 6000;
  env.SetFaults(spec);
  st = (*f)->ReadAt(4096, 4096, b.data());
  EXPECT_NE(st.message().find("end of file"), std::string::npos) << st.ToString();
  EXPECT_TRUE((*f)->ReadAt(0, 4096, b.data()).ok());

  env.ClearFaults();
  ASSERT_TRUE((*f)->ReadAt(4096, 4096, b.data()).ok());
  EXPECT_EQ(0, std::memcmp(b.data(), bytes.data() + 4096, 4096));
  const FaultCounters c = env.counters();
  EXPECT_EQ(c.injected_errors, 1u);
  EXPECT_EQ(c.short_reads, 1u);
  EXPECT_EQ(c.truncated_reads, 1u);
}

TEST(IoFaultInjection, LatencyOnAManualClock) {
  MemStorageEnv mem;
  mem.WriteFile("f", Pattern(8192, 8));
  ManualClock clock(1000);
  FaultInjectionEnv env(&mem, &clock);
  FaultSpec spec;
  spec.latency_nanos = 5'000'000;
  env.SetFaults(spec);
  auto f = env.OpenForRandomRead("f");
  std::vector<uint8_t> b(4096);
  ReadId id = (*f)->Submit({0, 4096, b.data(), {}, 0});
  EXPECT_TRUE((*f)->Poll().empty());  // not yet: 5 ms have not passed
  clock.Advance(4'999'999);
  EXPECT_TRUE((*f)->Poll().empty());
  clock.Advance(1);
  auto got = (*f)->Poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, id);
  EXPECT_GE(got[0].latency_nanos, 5'000'000);
  // Wait advances simulated time to the completion.
  id = (*f)->Submit({0, 4096, b.data(), {}, 0});
  std::vector<ReadResult> done;
  const int64_t t0 = clock.NowNanos();
  ASSERT_TRUE((*f)->Wait({&id, 1}, -1, &done).ok());
  EXPECT_EQ(clock.NowNanos() - t0, 5'000'000);
  // A deadline shorter than the latency times out; the read is still collectable.
  id = (*f)->Submit({0, 4096, b.data(), {}, 0});
  done.clear();
  EXPECT_EQ((*f)->Wait({&id, 1}, 1'000'000, &done).code(), StatusCode::kIoError);
  EXPECT_TRUE(done.empty());
  ASSERT_TRUE((*f)->Wait({&id, 1}, -1, &done).ok());
  EXPECT_EQ(done.size(), 1u);
}

}  // namespace
}  // namespace tierlm::io
