// TieredWeightStore: exact bytes under every budget and order, the hard budget, planning,
// faults, files changing underneath, and prefetch hiding latency (on a simulated clock).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>

#include <gtest/gtest.h>

#include "format/gguf_writer.h"
#include "io/fault_injection_env.h"
#include "io/mem_storage_env.h"
#include "io/posix_storage_env.h"
#include "tiers/tiered_weight_store.h"

namespace tierlm {
namespace {

constexpr int kLayers = 3;
constexpr int64_t kE = 64, kF = 160, kV = 100;

class TiersTieredStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/tierlm_tiers_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".gguf";
    gguf::GgufWriter w;
    std::mt19937 rng(17);
    auto add = [&](const std::string& name, std::vector<int64_t> ne) {
      int64_t n = 1;
      for (auto d : ne) n *= d;
      std::vector<uint8_t> data(static_cast<size_t>(n) * 4);
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      ASSERT_TRUE(w.AddTensor(name, GgmlType::kF32, ne, std::move(data)).ok());
    };
    add("token_embd.weight", {kE, kV});
    for (int l = 0; l < kLayers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      add(p + "attn_norm.weight", {kE});
      add(p + "attn_q.weight", {kE, kE});
      add(p + "attn_k.weight", {kE, kE / 2});
      add(p + "attn_v.weight", {kE, kE / 2});
      add(p + "attn_output.weight", {kE, kE});
      add(p + "ffn_norm.weight", {kE});
      add(p + "ffn_gate.weight", {kE, kF});
      add(p + "ffn_up.weight", {kE, kF});
      add(p + "ffn_down.weight", {kF, kE});
    }
    add("output_norm.weight", {kE});
    add("output.weight", {kE, kV});
    ASSERT_TRUE(w.Write(path_).ok());
    std::ifstream f(path_, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(f), {});
    mem_.WriteFile(path_, bytes_);
    file_ = std::make_unique<gguf::GgufFile>(std::move(gguf::GgufFile::Open(path_)).value());
    // The forward pass order: embedding, per layer attention then FFN, then the head.
    auto T = [&](const std::string& n) { return file_->FindTensor(n); };
    pass_.push_back(T("token_embd.weight"));
    for (int l = 0; l < kLayers; ++l)
      for (const char* s : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                            "ffn_up", "ffn_down"})
        pass_.push_back(T("blk." + std::to_string(l) + "." + s + ".weight"));
    pass_.push_back(T("output_norm.weight"));
    pass_.push_back(T("output.weight"));
  }
  void TearDown() override { std::remove(path_.c_str()); }

  TieredWeightStoreOptions Options(uint64_t budget) {
    TieredWeightStoreOptions o;
    o.budget_bytes = budget;
    return o;
  }
  uint64_t MinBudget() {
    auto p = TieredWeightStore::Plan(*file_, Options(1));
    EXPECT_FALSE(p.ok());
    auto q = TieredWeightStore::Plan(*file_, Options(1ull << 40));
    return q->min_budget_bytes;
  }

  ::testing::AssertionResult Check(WeightStore& s, const gguf::TensorInfo& t) {
    auto pin = s.Acquire(t);
    if (!pin.ok()) return ::testing::AssertionFailure() << pin.status().ToString();
    if (pin->size() != t.size_bytes || std::memcmp(pin->data(), bytes_.data() + t.file_offset, t.size_bytes))
      return ::testing::AssertionFailure() << "bytes of " << t.name << " differ";
    return ::testing::AssertionSuccess();
  }

  std::string path_;
  std::vector<uint8_t> bytes_;
  io::MemStorageEnv mem_;
  std::unique_ptr<gguf::GgufFile> file_;
  std::vector<const gguf::TensorInfo*> pass_;
};

TEST_F(TiersTieredStoreTest, PlanPinsEssentialsAndNamesTheSmallestBudget) {
  const uint64_t min = MinBudget();
  auto too_small = TieredWeightStore::Plan(*file_, Options(min - 4096));
  ASSERT_FALSE(too_small.ok());
  EXPECT_EQ(too_small.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(too_small.status().message().find("smallest workable budget is " + std::to_string(min)),
            std::string::npos)
      << too_small.status().ToString();
  auto p = TieredWeightStore::Plan(*file_, Options(min));
  ASSERT_TRUE(p.ok());
  for (const WeightUnit& u : p->units)
    if (u.name.find("norm") != std::string::npos) { EXPECT_TRUE(u.pinned) << u.name; }
  EXPECT_LE(p->pinned_bytes + 2 * p->largest_streamed_bytes, min);
  EXPECT_GT(p->streamed_bytes_per_token, 0u);
  auto all = TieredWeightStore::Plan(*file_, Options(1ull << 30));
  EXPECT_EQ(all->n_streamed, 0);
  EXPECT_EQ(all->streamed_bytes_per_token, 0u);
  // A middle budget pins attention before FFN.
  auto mid = TieredWeightStore::Plan(*file_, Options((min + all->total_bytes) / 2));
  std::printf("%s\n", mid->ToString().c_str());
  bool attn_pinned = false, ffn_streamed = false;
  for (const WeightUnit& u : mid->units) {
    attn_pinned |= u.pinned && u.name.find("attn_q") != std::string::npos;
    ffn_streamed |= !u.pinned && u.name.find("ffn_up") != std::string::npos;
  }
  EXPECT_TRUE(attn_pinned);
  EXPECT_TRUE(ffn_streamed);
}

TEST_F(TiersTieredStoreTest, ExactBytesUnderEveryBudgetAndOrder) {
  const uint64_t min = MinBudget();
  const uint64_t total = TieredWeightStore::Plan(*file_, Options(1ull << 30))->total_bytes;
  io::PosixStorageEnv posix;
  for (io::StorageEnv* env : {static_cast<io::StorageEnv*>(&mem_), static_cast<io::StorageEnv*>(&posix)}) {
    for (uint64_t budget : {min, (min + total) / 2, total + 8192}) {
      for (int depth : {0, 4}) {
        TieredWeightStoreOptions o = Options(budget);
        o.prefetch_depth = depth;
        auto store = TieredWeightStore::Open(*file_, env, o);
        ASSERT_TRUE(store.ok()) << store.status().ToString();
        for (int pass = 0; pass < 3; ++pass)
          for (const auto* t : pass_) ASSERT_TRUE(Check(**store, *t)) << "budget " << budget;
        std::mt19937 rng(static_cast<uint32_t>(budget + depth));
        for (int i = 0; i < 200; ++i) {
          const auto& t = file_->tensors()[rng() % file_->tensors().size()];
          ASSERT_TRUE(Check(**store, t)) << "budget " << budget;
        }
        // Two pins at once, and a pin outliving later acquires.
        {
          auto a = (*store)->Acquire(*pass_[1]);
          ASSERT_TRUE(a.ok());
          ASSERT_TRUE(Check(**store, *pass_[2]));
          EXPECT_EQ(0, std::memcmp(a->data(), bytes_.data() + pass_[1]->file_offset, pass_[1]->size_bytes));
        }
        const ResidencyStats rs = (*store)->residency_stats();
        EXPECT_LE(rs.peak_allocated_bytes, budget);
        EXPECT_LE(rs.capacity_bytes, budget);
        if (budget < total) { EXPECT_GT(rs.Total().bytes_read, total); }  // streamed again
        if (depth && budget < total) { EXPECT_GT(rs.Total().prefetches, 0u); }
        EXPECT_EQ((*store)->Stats().acquires, rs.Total().acquires);
      }
    }
  }
}

TEST_F(TiersTieredStoreTest, IoFaultMidStreamNamesTensorAndStoreStaysUsable) {
  io::FaultInjectionEnv env(&mem_);
  auto store = TieredWeightStore::Open(*file_, &env, Options(MinBudget()));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (const auto* t : pass_) ASSERT_TRUE(Check(**store, *t));
  const gguf::TensorInfo* victim = file_->FindTensor("blk.1.ffn_up.weight");
  io::FaultSpec spec;
  spec.fail_begin = victim->file_offset + 100;
  spec.fail_end = spec.fail_begin + 1;
  env.SetFaults(spec);
  bool saw_error = false;
  for (const auto* t : pass_) {
    auto pin = (*store)->Acquire(*t);
    if (t == victim) {
      ASSERT_FALSE(pin.ok());
      EXPECT_EQ(pin.status().code(), StatusCode::kIoError);
      EXPECT_NE(pin.status().message().find("'blk.1.ffn_up.weight'"), std::string::npos) << pin.status().ToString();
      EXPECT_NE(pin.status().message().find("offset " + std::to_string(victim->file_offset)), std::string::npos)
          << pin.status().ToString();
      saw_error = true;
    } else if (!pin.ok()) {
      // A neighbour sharing the failing 4 KiB page fails the same way; nothing else does.
      EXPECT_LT(std::max(t->file_offset, victim->file_offset) - std::min(t->file_offset, victim->file_offset),
                victim->size_bytes + 8192)
          << pin.status().ToString();
    }
  }
  EXPECT_TRUE(saw_error);
  env.ClearFaults();
  for (int pass = 0; pass < 2; ++pass)
    for (const auto* t : pass_) ASSERT_TRUE(Check(**store, *t));
  EXPECT_GT((*store)->residency_stats().Total().io_errors, 0u);
}

TEST_F(TiersTieredStoreTest, FileTruncatedOrReplacedIsDetectedNotRead) {
  {
    auto store = TieredWeightStore::Open(*file_, &mem_, Options(MinBudget()));
    ASSERT_TRUE(store.ok());
    for (const auto* t : pass_) ASSERT_TRUE(Check(**store, *t));
    ASSERT_TRUE(mem_.Truncate(path_, bytes_.size() / 2).ok());
    bool detected = false;
    for (const auto* t : pass_) {
      auto pin = (*store)->Acquire(*t);
      if (!pin.ok()) {
        EXPECT_EQ(pin.status().code(), StatusCode::kCorruption);
        EXPECT_NE(pin.status().message().find("changed since open"), std::string::npos);
        EXPECT_NE(pin.status().message().find(t->name), std::string::npos);
        detected = true;
      }
    }
    EXPECT_TRUE(detected);
  }
  // A real file replaced by another of the same size.
  io::PosixStorageEnv posix;
  auto store = TieredWeightStore::Open(*file_, &posix, Options(MinBudget()));
  ASSERT_TRUE(store.ok());
  for (const auto* t : pass_) ASSERT_TRUE(Check(**store, *t));
  const std::string other = path_ + ".new";
  {
    std::ofstream f(other, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes_.data()), static_cast<std::streamsize>(bytes_.size()));
  }
  ASSERT_EQ(std::rename(other.c_str(), path_.c_str()), 0);
  int failures = 0;
  for (const auto* t : pass_) failures += !(*store)->Acquire(*t).ok();
  EXPECT_GT(failures, 0);
  // Opening on a file that no longer matches the parsed header fails up front.
  mem_.WriteFile(path_, std::vector<uint8_t>(100));
  EXPECT_EQ(TieredWeightStore::Open(*file_, &mem_, Options(MinBudget())).status().code(), StatusCode::kCorruption);
}

TEST_F(TiersTieredStoreTest, PrefetchHidesInjectedLatency) {
  // Simulated time: each read takes 1 ms, each tensor computes for 0.5 ms. With four
  // tensors read ahead a read has 2 ms to finish; without, every streamed tensor stalls.
  const uint64_t total = TieredWeightStore::Plan(*file_, Options(1ull << 30))->total_bytes;
  auto run = [&](int depth) {
    io::ManualClock clock;
    io::FaultInjectionEnv env(&mem_, &clock);
    TieredWeightStoreOptions o = Options(total / 2);
    o.pinned_share = 0.5;
    o.prefetch_depth = depth;
    o.clock = &clock;
    auto store = std::move(TieredWeightStore::Open(*file_, &env, o)).value();
    io::FaultSpec spec;
    spec.latency_nanos = 1'000'000;
    env.SetFaults(spec);
    for (const auto* t : pass_) EXPECT_TRUE(Check(*store, *t));  // learns the schedule
    const ClassStats before = store->residency_stats().Total();
    for (int pass = 0; pass < 4; ++pass)
      for (const auto* t : pass_) {
        EXPECT_TRUE(Check(*store, *t));
        clock.Advance(500'000);
      }
    ClassStats after = store->residency_stats().Total();
    after.stalls -= before.stalls;
    after.stall_nanos -= before.stall_nanos;
    after.reads -= before.reads;
    return after;
  };
  const ClassStats off = run(0), on = run(4);
  std::printf("no prefetch: %llu stalls, %.1f ms over %llu reads; prefetch 4: %llu stalls, %.1f ms over %llu reads\n",
              (unsigned long long)off.stalls, off.stall_nanos / 1e6, (unsigned long long)off.reads,
              (unsigned long long)on.stalls, on.stall_nanos / 1e6, (unsigned long long)on.reads);
  EXPECT_GT(off.stalls, 0u);
  EXPECT_EQ(off.stall_nanos, static_cast<int64_t>(off.stalls) * 1'000'000);  // every read waited in full
  EXPECT_LE(on.stalls * 10, off.stalls);
  EXPECT_LT(on.stall_nanos * 10, off.stall_nanos);
}

}  // namespace
}  // namespace tierlm
