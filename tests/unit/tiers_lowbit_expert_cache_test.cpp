// The low-bit expert cache file: build and open round trip on a synthetic MoE model,
// fidelity of the copies, stale and corrupt files, write failures leaving nothing behind.
#include "tiers/lowbit_expert_cache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "io/posix_storage_env.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "model/moe_ffn.h"
#include "synth/synth_model.h"
#include "test_paths.h"

namespace tierlm {
namespace {

namespace fs = std::filesystem;

class LowbitCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir("lowbit-cache");
    model_path_ = (dir_ / "moe.gguf").string();
    auto spec = SynthPreset("moe-tiny", "llama");
    ASSERT_TRUE(WriteSynthModel(*spec, SynthType::kQ4_0, 5, model_path_, &pool_).ok());
    auto g = gguf::GgufFile::Open(model_path_);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    model_ = std::make_unique<gguf::GgufFile>(std::move(*g));
    auto f = env_.OpenForRandomRead(model_path_);
    ASSERT_TRUE(f.ok());
    model_file_ = std::move(*f);
    auto id = ComputeModelIdentity(*model_, *model_file_);
    ASSERT_TRUE(id.ok());
    identity_ = *id;
    cache_path_ = DefaultLowbitCachePath(model_path_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  LowbitBuildStats BuildCache(const std::string& path) {
    auto st = LowbitExpertCache::Build(*model_, *model_file_, path, &pool_);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : LowbitBuildStats{};
  }
  Result<LowbitExpertCache::Opened> OpenCache() { return LowbitExpertCache::Open(&env_, cache_path_, identity_); }

  void FlipByte(const std::string& path, uint64_t offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
  }
  // The files in the scratch folder other than the model and its cache.
  std::vector<std::string> Leftovers() {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      const std::string p = e.path().string();
      if (e.is_regular_file() && p != model_path_ && p != cache_path_) out.push_back(p);
    }
    return out;
  }
  // The original (dequantized) values of an expert unit "name#e".
  std::vector<float> Original(const std::string& unit, int64_t* n_in, int64_t* n_out) {
    const std::string stacked = unit.substr(0, unit.find('#'));
    const int64_t e = std::stoll(unit.substr(unit.find('#') + 1));
    const gguf::TensorInfo* t = model_->FindTensor(stacked);
    const gguf::TensorInfo slice = SliceExperts(*t)[e];
    std::vector<uint8_t> raw(slice.size_bytes);
    EXPECT_TRUE(model_file_->ReadAt(slice.file_offset, raw.size(), raw.data()).ok());
    *n_in = t->ne[0];
    *n_out = t->ne[1];
    std::vector<float> out(*n_in * *n_out);
    for (int64_t r = 0; r < *n_out; ++r)
      DequantizeRow(t->type, raw.data() + r * RowBytes(t->type, *n_in), out.data() + r * *n_in, *n_in);
    return out;
  }

  ThreadPool pool_{2};
  io::PosixStorageEnv env_;
  fs::path dir_;
  std::string model_path_, cache_path_;
  std::unique_ptr<gguf::GgufFile> model_;
  std::unique_ptr<io::RandomAccessFile> model_file_;
  LowbitModelIdentity identity_;
};

TEST_F(LowbitCacheTest, BuildOpenRoundTripEveryExpertClose) {
  const LowbitBuildStats stats = BuildCache(cache_path_);
  EXPECT_EQ(stats.entries, 4 * 3 * 8);  // layers x (gate, up, down) x experts
  EXPECT_EQ(stats.cache_bytes, fs::file_size(cache_path_));
  EXPECT_TRUE(Leftovers().empty());
  auto opened = OpenCache();
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ASSERT_EQ(opened->state, LowbitCacheState::kValid) << opened->reason;
  LowbitExpertCache& cache = *opened->cache;
  ASSERT_EQ(cache.entries().size(), 96u);
  EXPECT_EQ(cache.type(), GgmlType::kLQ2);
  // Unit names are SliceExperts' names.
  for (const auto& s : SliceExperts(*model_->FindTensor("blk.2.ffn_down_exps.weight")))
    EXPECT_NE(cache.Find(s.name), nullptr) << s.name;
  EXPECT_EQ(cache.Find("blk.0.ffn_up_exps.weight#8"), nullptr);
  double worst = 0.0;
  for (const LowbitEntry& e : cache.entries()) {
    ASSERT_EQ(e.offset % 4096, 0u) << e.name;
    std::vector<uint8_t> data(e.size);
    ASSERT_TRUE(cache.ReadEntry(e, data.data()).ok()) << e.name;
    int64_t n_in = 0, n_out = 0;
    const std::vector<float> orig = Original(e.name, &n_in, &n_out);
    ASSERT_EQ(e.n_in, n_in);
    ASSERT_EQ(e.n_out, n_out);
    std::vector<float> row(n_in);
    double err = 0.0, sig = 0.0;
    for (int64_t r = 0; r < n_out; ++r) {
      DequantizeRow(e.type, data.data() + r * RowBytes(e.type, n_in), row.data(), n_in);
      for (int64_t i = 0; i < n_in; ++i) {
        const double o = orig[r * n_in + i];
        err += (row[i] - o) * (row[i] - o);
        sig += o * o;
      }
    }
    worst = std::max(worst, std::sqrt(err / sig));
  }
  std::printf("worst relative rmse of a low-bit expert vs its q4_0 original: %.4f\n", worst);
  EXPECT_LT(worst, 0.30);
}

TEST_F(LowbitCacheTest, MatmulWithLowbitCopyIsCloseToOriginal) {
  BuildCache(cache_path_);
  auto opened = OpenCache();
  ASSERT_TRUE(opened.ok() && opened->state == LowbitCacheState::kValid);
  for (const std::string unit : {"blk.1.ffn_gate_exps.weight#3", "blk.3.ffn_down_exps.weight#6"}) {
    const LowbitEntry* e = opened->cache->Find(unit);
    ASSERT_NE(e, nullptr);
    std::vector<uint8_t> low(e->size);
    ASSERT_TRUE(opened->cache->ReadEntry(*e, low.data()).ok());
    const std::string stacked = unit.substr(0, unit.find('#'));
    const gguf::TensorInfo slice = SliceExperts(*model_->FindTensor(stacked))[std::stoi(unit.substr(unit.find('#') + 1))];
    std::vector<uint8_t> orig(slice.size_bytes);
    ASSERT_TRUE(model_file_->ReadAt(slice.file_offset, orig.size(), orig.data()).ok());
    const int64_t n_tok = 3;
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(n_tok * e->n_in);
    for (auto& v : x) v = dist(rng);
    std::vector<float> y0(n_tok * e->n_out), y1(n_tok * e->n_out);
    Matmul({slice.type, orig.data(), e->n_in, e->n_out}, x.data(), e->n_in, n_tok, y0.data(), e->n_out, &pool_);
    Matmul({e->type, low.data(), e->n_in, e->n_out}, x.data(), e->n_in, n_tok, y1.data(), e->n_out, &pool_);
    double err = 0.0, sig = 0.0;
    for (size_t i = 0; i < y0.size(); ++i) {
      err += (double(y1[i]) - y0[i]) * (double(y1[i]) - y0[i]);
      sig += double(y0[i]) * y0[i];
    }
    std::printf("%s: relative error of the low-bit matmul %.4f\n", unit.c_str(), std::sqrt(err / sig));
    EXPECT_LT(std::sqrt(err / sig), 0.35) << unit;
  }
}

TEST_F(LowbitCacheTest, StaleWhenTheModelChanges) {
  BuildCache(cache_path_);
  // Touched: same bytes, new mtime.
  fs::last_write_time(model_path_, fs::last_write_time(model_path_) + std::chrono::seconds(5));
  auto f = env_.OpenForRandomRead(model_path_);
  ASSERT_TRUE(f.ok());
  auto id = ComputeModelIdentity(*model_, **f);
  ASSERT_TRUE(id.ok());
  auto opened = LowbitExpertCache::Open(&env_, cache_path_, *id);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->state, LowbitCacheState::kStale);
  EXPECT_NE(opened->reason.find("mtime differs"), std::string::npos) << opened->reason;
  // Same size and mtime but other header bytes (metadata rewritten in place).
  LowbitModelIdentity other = identity_;
  other.header_hash ^= 1;
  opened = LowbitExpertCache::Open(&env_, cache_path_, other);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->state, LowbitCacheState::kStale);
  EXPECT_NE(opened->reason.find("header hash differs"), std::string::npos) << opened->reason;
  other = identity_;
  other.size += 4096;
  opened = LowbitExpertCache::Open(&env_, cache_path_, other);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->state, LowbitCacheState::kStale);
  // Missing.
  fs::remove(cache_path_);
  opened = OpenCache();
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->state, LowbitCacheState::kMissing);
}

TEST_F(LowbitCacheTest, CorruptionIsDetectedAndNamed) {
  BuildCache(cache_path_);
  const std::string pristine = cache_path_ + ".pristine";
  fs::copy_file(cache_path_, pristine);
  auto restore = [&] { fs::copy_file(pristine, cache_path_, fs::copy_options::overwrite_existing); };
  auto expect_corrupt = [&](const std::string& what, const std::string& needle) {
    auto opened = OpenCache();
    ASSERT_FALSE(opened.ok()) << what;
    EXPECT_EQ(opened.status().code(), StatusCode::kCorruption) << what;
    EXPECT_NE(opened.status().message().find(cache_path_), std::string::npos) << opened.status().message();
    EXPECT_NE(opened.status().message().find(needle), std::string::npos) << what << ": " << opened.status().message();
    restore();
  };
  FlipByte(cache_path_, 2);
  expect_corrupt("magic", "bad magic");
  FlipByte(cache_path_, 40);  // the entry count
  expect_corrupt("header field", "header checksum");
  FlipByte(cache_path_, 4096 + 10);  // a name in the table
  expect_corrupt("table", "entry table checksum");
  fs::resize_file(cache_path_, fs::file_size(cache_path_) - 4096);
  expect_corrupt("truncated", "truncated");
  fs::resize_file(cache_path_, 100);
  expect_corrupt("truncated header", "truncated");

  // A flipped data byte passes Open (no full scan) and fails the entry's checksum.
  auto opened = OpenCache();
  ASSERT_TRUE(opened.ok() && opened->state == LowbitCacheState::kValid);
  const LowbitEntry e = opened->cache->entries()[7];
  opened->cache.reset();
  FlipByte(cache_path_, e.offset + e.size / 2);
  opened = OpenCache();
  ASSERT_TRUE(opened.ok() && opened->state == LowbitCacheState::kValid);
  std::vector<uint8_t> data(e.size);
  const Status st = opened->cache->ReadEntry(*opened->cache->Find(e.name), data.data());
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("'" + e.name + "'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("checksum mismatch"), std::string::npos) << st.message();
  // Every other entry still verifies.
  const LowbitEntry& other = opened->cache->entries()[8];
  std::vector<uint8_t> ok(other.size);
  EXPECT_TRUE(opened->cache->ReadEntry(other, ok.data()).ok());
}

TEST_F(LowbitCacheTest, OpenOrBuildBuildsOnceAndRebuildsStaleOrCorrupt) {
  auto r = LowbitExpertCache::OpenOrBuild(&env_, *model_, model_path_, &pool_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->built);
  EXPECT_EQ(r->reason.rfind("missing", 0), 0u) << r->reason;
  EXPECT_EQ(r->cache->path(), cache_path_);
  EXPECT_EQ(r->stats.entries, 96);

  r = LowbitExpertCache::OpenOrBuild(&env_, *model_, model_path_, &pool_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->built);

  fs::last_write_time(model_path_, fs::last_write_time(model_path_) + std::chrono::seconds(5));
  r = LowbitExpertCache::OpenOrBuild(&env_, *model_, model_path_, &pool_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->built);
  EXPECT_EQ(r->reason.rfind("stale", 0), 0u) << r->reason;
  r->cache.reset();

  FlipByte(cache_path_, 30);
  r = LowbitExpertCache::OpenOrBuild(&env_, *model_, model_path_, &pool_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->built);
  EXPECT_EQ(r->reason.rfind("corrupt", 0), 0u) << r->reason;
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(LowbitCacheTest, WriteErrorsLeaveNoFile) {
  // A write failing part way (a full disk) after some entries were written.
  LowbitBuildOptions options;
  int writes = 0;
  options.write_fault = [&](uint64_t, uint64_t) {
    return ++writes > 10 ? Status::ResourceExhausted("write failed: No space left on device") : Status::Ok();
  };
  auto st = LowbitExpertCache::Build(*model_, *model_file_, cache_path_, &pool_, options);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.status().message().find(".tmp"), std::string::npos) << st.status().message();
  EXPECT_FALSE(fs::exists(cache_path_));
  EXPECT_TRUE(Leftovers().empty());

  // The header is written last: failing only that write leaves nothing either.
  options.write_fault = [&](uint64_t offset, uint64_t) {
    return offset == 0 ? Status::IoError("write failed: Input/output error") : Status::Ok();
  };
  st = LowbitExpertCache::Build(*model_, *model_file_, cache_path_, &pool_, options);
  ASSERT_FALSE(st.ok());
  EXPECT_FALSE(fs::exists(cache_path_));
  EXPECT_TRUE(Leftovers().empty());

  // A valid cache already in place survives a failed rebuild untouched.
  BuildCache(cache_path_);
  const auto before = fs::file_size(cache_path_);
  st = LowbitExpertCache::Build(*model_, *model_file_, cache_path_, &pool_, options);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(fs::file_size(cache_path_), before);
  auto opened = OpenCache();
  ASSERT_TRUE(opened.ok() && opened->state == LowbitCacheState::kValid);
}

TEST_F(LowbitCacheTest, UnwritableDirectoryFailsOrFallsBack) {
  // A path under a regular file cannot be created (ENOTDIR), even as root.
  const std::string blocker = (dir_ / "not-a-dir").string();
  std::ofstream(blocker) << "x";
  const std::string bad = blocker + "/moe.gguf.tierlm-lowbit";
  auto st = LowbitExpertCache::Build(*model_, *model_file_, bad, &pool_);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kIoError);
  EXPECT_NE(st.status().message().find("cannot create"), std::string::npos) << st.status().message();

  LowbitExpertCache::OpenOrBuildOptions options;
  options.path = bad;
  options.fallback_dir = (dir_ / "fallback").string();
  fs::create_directories(options.fallback_dir);
  auto r = LowbitExpertCache::OpenOrBuild(&env_, *model_, model_path_, &pool_, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->built);
  EXPECT_EQ(r->cache->path(), (dir_ / "fallback" / "moe.gguf.tierlm-lowbit").string());
  // Next time the fallback copy is found without a rebuild.
  r = LowbitExpertCache::OpenOrBuild(&env_, *model_, model_path_, &pool_, options);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->built);
}

// The cost of the per-entry check the caller runs after each read (printed, not asserted).
TEST_F(LowbitCacheTest, ChecksumThroughput) {
  std::vector<uint8_t> buf(64 << 20);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 131);
  uint64_t h = LowbitHash(buf.data(), buf.size());  // warm
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) h ^= LowbitHash(buf.data(), buf.size());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("xxh3: %.1f GB/s (%llx)\n", 4.0 * buf.size() / s / 1e9, static_cast<unsigned long long>(h));
}

}  // namespace
}  // namespace tierlm
