// Paged attention against a double-precision softmax over the same (decoded) keys and
// values, for every KV type; rows independent of the batch, the thread count and the block
// layout; skipped blocks count as absent.
#include "kernels/paged_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/paged_attention_internal.h"
#include "kernels/quant.h"
#include "kv/paged_kv_store.h"

namespace tierlm {
namespace {

struct Shape {
  int64_t n_head = 8, n_head_kv = 2, hd = 64;
  int32_t block = 16;
};

// A store with one layer, sequences laid out on the given (shuffled) blocks, random keys
// and values; `decoded` keeps what the store holds after rounding to its types.
struct Fixture {
  kv::PagedKvStore store;
  std::vector<float> k_dec, v_dec;  // [position][n_head_kv * hd] as stored
};

Fixture Build(const Shape& s, GgmlType kt, GgmlType vt, const std::vector<int32_t>& blocks, int64_t n_pos,
              std::mt19937& rng) {
  auto st = kv::PagedKvStore::Create(1, s.n_head_kv, s.hd, kv::KvFormat{kt, vt, s.block}, 64);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  Fixture f{std::move(*st), {}, {}};
  const int64_t KV = s.n_head_kv * s.hd;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  f.k_dec.resize(static_cast<size_t>(n_pos * KV));
  f.v_dec.resize(static_cast<size_t>(n_pos * KV));
  std::vector<float> k(static_cast<size_t>(KV)), v(static_cast<size_t>(KV));
  std::vector<uint8_t> tmp(static_cast<size_t>(KV * 4 + 64));
  for (int64_t p = 0; p < n_pos; ++p) {
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    f.store.Write(0, {blocks[static_cast<size_t>(p / s.block)], static_cast<int32_t>(p % s.block)}, k.data(), v.data());
    for (int64_t h = 0; h < s.n_head_kv; ++h) {
      QuantizeRow(kt, k.data() + h * s.hd, tmp.data(), s.hd);
      DequantizeRow(kt, tmp.data(), f.k_dec.data() + p * KV + h * s.hd, s.hd);
      QuantizeRow(vt, v.data() + h * s.hd, tmp.data(), s.hd);
      DequantizeRow(vt, tmp.data(), f.v_dec.data() + p * KV + h * s.hd, s.hd);
    }
  }
  return f;
}

// Double-precision attention of one query row over positions [0, n_keys), skipping blocks.
std::vector<double> Reference(const Shape& s, const Fixture& f, const float* q, int64_t n_keys,
                              const std::vector<uint8_t>* skip) {
  const int64_t KV = s.n_head_kv * s.hd, G = s.n_head / s.n_head_kv;
  std::vector<double> out(static_cast<size_t>(s.n_head * s.hd), 0.0);
  for (int64_t h = 0; h < s.n_head; ++h) {
    const int64_t g = h / G;
    std::vector<double> sc;
    std::vector<int64_t> ps;
    for (int64_t p = 0; p < n_keys; ++p) {
      if (skip && (*skip)[static_cast<size_t>(p / s.block)]) continue;
      double d = 0;
      for (int64_t i = 0; i < s.hd; ++i) d += double(q[h * s.hd + i]) * f.k_dec[p * KV + g * s.hd + i];
      sc.push_back(d / std::sqrt(double(s.hd)));
      ps.push_back(p);
    }
    if (sc.empty()) continue;
    double m = sc[0];
    for (double x : sc) m = std::max(m, x);
    double z = 0;
    for (double& x : sc) z += (x = std::exp(x - m));
    for (size_t j = 0; j < sc.size(); ++j)
      for (int64_t i = 0; i < s.hd; ++i) out[h * s.hd + i] += sc[j] / z * f.v_dec[ps[j] * KV + g * s.hd + i];
  }
  return out;
}

struct TypeCase {
  const char* k;
  const char* v;
};
void PrintTo(const TypeCase& c, std::ostream* os) { *os << "k " << c.k << " v " << c.v; }
class PagedAttentionTypeTest : public ::testing::TestWithParam<TypeCase> {};

// Rows of several lengths over one shuffled sequence, on every kernel path: within 2e-5 of
// the double reference, and each row alone bit-identical to the batch.
void CheckAgainstReference(const Shape& s, GgmlType kt, GgmlType vt) {
  std::mt19937 rng(3);
  std::vector<int32_t> blocks(40);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), rng);  // a sequence's blocks are anywhere
  const int64_t n_pos = 600;                         // three 256-key spans
  Fixture f = Build(s, kt, vt, blocks, n_pos, rng);
  const auto layer = f.store.Layer(0);
  const AttentionShape shape{s.n_head, s.n_head_kv, s.hd, 1.0f / std::sqrt(float(s.hd))};
  // Rows of different lengths: a first key, inside a block, a block edge, past a span.
  const std::vector<int64_t> lens = {1, 7, 16, 255, 256, 257, 600};
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(lens.size() * s.n_head * s.hd);
  for (auto& x : q) x = nd(rng);
  std::vector<PagedQuery> rows;
  for (int64_t n : lens) rows.push_back({blocks.data(), n, nullptr});
  ThreadPool pool(2);
  for (KernelPath path : {KernelPath::kScalar, KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (!KernelPathSupported(path)) continue;
    SCOPED_TRACE(std::string(KernelPathName(path)));
    ForceKernelPath(path);
    std::vector<float> out(q.size());
    PagedAttention(shape, layer, rows, q.data(), out.data(), &pool);
    double worst = 0;
    for (size_t r = 0; r < lens.size(); ++r) {
      const auto want = Reference(s, f, q.data() + r * s.n_head * s.hd, lens[r], nullptr);
      for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(want[i] - out[r * want.size() + i]));
    }
    EXPECT_LT(worst, 2e-5) << "max abs difference from the double reference";

    // The same rows one at a time, in another order, single-threaded: bit-identical.
    for (size_t r = lens.size(); r-- > 0;) {
      std::vector<float> one(static_cast<size_t>(s.n_head * s.hd));
      PagedAttention(shape, layer, std::span<const PagedQuery>(&rows[r], 1), q.data() + r * one.size(), one.data(),
                     nullptr);
      for (size_t i = 0; i < one.size(); ++i)
        ASSERT_EQ(one[i], out[r * one.size() + i]) << "row " << r << " [" << i << "]";
    }
  }
  ForceKernelPath(std::nullopt);
}

TEST_P(PagedAttentionTypeTest, MatchesDoubleReferenceOnDecodedValues) {
  auto kt = kv::ParseKvType(GetParam().k);
  auto vt = kv::ParseKvType(GetParam().v);
  ASSERT_TRUE(kt.ok() && vt.ok());
  CheckAgainstReference(Shape{}, *kt, *vt);
}

// Every head size the AVX-512 kernel has, with query heads per KV head that fill its head
// groups exactly, leave a remainder, or make no group at all.
TEST(PagedAttentionTest, EveryHeadSizeAndGroupMatchesTheReference) {
  const Shape shapes[] = {{2, 2, 32}, {12, 2, 32}, {6, 1, 64}, {9, 1, 96}, {10, 2, 128}, {3, 1, 256}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE("n_head " + std::to_string(s.n_head) + " n_head_kv " + std::to_string(s.n_head_kv) + " hd " +
                 std::to_string(s.hd));
    CheckAgainstReference(s, GgmlType::kF32, GgmlType::kF16);
  }
}

// Keys of f16 and bf16 are stored transposed within a block (PagedKvLayer::k_transposed);
// blocks other than 16 positions take 16-key pieces of them at other offsets.
TEST(PagedAttentionTest, BlockSizesOtherThan16MatchTheReference) {
  for (int32_t block : {24, 64})
    for (GgmlType kt : {GgmlType::kF16, GgmlType::kBF16, GgmlType::kF32}) {
      SCOPED_TRACE("block " + std::to_string(block) + " k " + std::string(TypeName(kt)));
      Shape s;
      s.block = block;
      CheckAgainstReference(s, kt, GgmlType::kF16);
    }
}

// The AVX-512 kernel computes query heads four (or two) at a time, sharing their
// reductions; a head's result must be the bits it gets computed on its own (one query head
// per KV head), in decode and in the multi-row prefill path.
TEST(PagedAttentionTest, HeadsComputedTogetherGiveTheBitsOfEachHeadAlone) {
  for (int64_t hd : {64, 128}) {
    SCOPED_TRACE("hd " + std::to_string(hd));
    const Shape s{8, 1, hd};
    std::mt19937 rng(11);
    std::vector<int32_t> blocks(40);
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    Fixture f = Build(s, GgmlType::kF16, GgmlType::kF16, blocks, 600, rng);
    const auto layer = f.store.Layer(0);
    const float scale = 1.0f / std::sqrt(float(hd));
    const std::vector<int64_t> lens = {1, 17, 31, 32, 33, 300, 590, 591, 592, 593, 600};
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> q(lens.size() * s.n_head * hd);
    for (auto& x : q) x = nd(rng);
    std::vector<PagedQuery> rows;
    for (int64_t n : lens) rows.push_back({blocks.data(), n, nullptr});
    ThreadPool pool(2);
    std::vector<float> all(q.size());
    PagedAttention(AttentionShape{s.n_head, 1, hd, scale}, layer, rows, q.data(), all.data(), &pool);
    for (size_t r = 0; r < lens.size(); ++r)
      for (int64_t h = 0; h < s.n_head; ++h) {
        const float* qh = q.data() + (r * s.n_head + h) * hd;
        std::vector<float> one(static_cast<size_t>(hd));
        PagedAttention(AttentionShape{1, 1, hd, scale}, layer, std::span<const PagedQuery>(&rows[r], 1), qh, one.data(),
                       nullptr);
        for (int64_t i = 0; i < hd; ++i)
          ASSERT_EQ(one[static_cast<size_t>(i)], all[(r * s.n_head + h) * hd + i]) << "row " << r << " head " << h << " [" << i << "]";
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, PagedAttentionTypeTest,
                         ::testing::Values(TypeCase{"f32", "f32"}, TypeCase{"f16", "f16"}, TypeCase{"bf16", "bf16"},
                                           TypeCase{"q8_0", "q8_0"}, TypeCase{"q4_0", "q4_0"},
                                           TypeCase{"q8_0", "f16"}, TypeCase{"f16", "q4_0"}),
                         [](const auto& info) { return std::string("k_") + info.param.k + "_v_" + info.param.v; });

TEST(PagedAttentionTest, SkippedBlocksCountAsAbsent) {
  const Shape s;
  std::mt19937 rng(5);
  std::vector<int32_t> blocks(10);
  std::iota(blocks.begin(), blocks.end(), 20);
  Fixture f = Build(s, GgmlType::kF32, GgmlType::kF32, blocks, 150, rng);
  std::vector<uint8_t> skip(10, 0);
  skip[1] = skip[4] = skip[9] = 1;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(s.n_head * s.hd));
  for (auto& x : q) x = nd(rng);
  const AttentionShape shape{s.n_head, s.n_head_kv, s.hd, 1.0f / std::sqrt(float(s.hd))};
  PagedQuery row{blocks.data(), 150, skip.data()};
  std::vector<float> out(q.size());
  PagedAttention(shape, f.store.Layer(0), std::span<const PagedQuery>(&row, 1), q.data(), out.data(), nullptr);
  const auto want = Reference(s, f, q.data(), 150, &skip);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 2e-5) << i;
  // Everything skipped: zeros, not NaN.
  std::fill(skip.begin(), skip.end(), 1);
  PagedAttention(shape, f.store.Layer(0), std::span<const PagedQuery>(&row, 1), q.data(), out.data(), nullptr);
  for (float x : out) EXPECT_EQ(x, 0.0f);
}

// The lines the fold kernel prefetches for the next step: every 64-byte line of KV head g's
// keys and values in the next step's blocks, from the layout written out here (a block holds
// its keys then its values, each head after head, block_size rows per head), in order.
TEST(PagedAttentionTest, NextStepLinesCoverTheNextBlocksKeysAndValuesOfTheHead) {
  struct Case {
    GgmlType kt, vt;
    int32_t block;
    int64_t k_row, v_row;  // bytes of one head's row at one position (hd = 64)
  };
  for (const Case c : {Case{GgmlType::kF16, GgmlType::kF16, 16, 128, 128}, Case{GgmlType::kQ8_0, GgmlType::kF32, 16, 68, 256},
                       Case{GgmlType::kQ4_0, GgmlType::kBF16, 24, 36, 128}}) {
    const int64_t n_head_kv = 2, hd = 64;
    auto st = kv::PagedKvStore::Create(1, n_head_kv, hd, kv::KvFormat{c.kt, c.vt, c.block}, 8);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    const kv::PagedKvLayer L = st->Layer(0);
    const std::vector<int32_t> table = {5, 2, 7, 0, 3};
    std::vector<uint8_t> skip(table.size() * n_head_kv, 0);
    skip[3 * n_head_kv + 1] = 1;  // block 3, KV head 1
    const PagedQuery row{table.data(), 5 * c.block, skip.data(), static_cast<int32_t>(n_head_kv)};
    auto want = [&](std::vector<int64_t> bs, int64_t g) {
      std::vector<const char*> lines;
      for (int64_t b : bs) {
        const auto* base = reinterpret_cast<const char*>(L.blocks[table[static_cast<size_t>(b)]]);
        const int64_t runs[2][2] = {{g * c.block * c.k_row, c.block * c.k_row},
                                    {n_head_kv * c.block * c.k_row + g * c.block * c.v_row, c.block * c.v_row}};
        for (const auto& r : runs)
          for (int64_t a = r[0] / 64 * 64; a < r[0] + r[1]; a += 64) lines.push_back(base + a);
      }
      return lines;
    };
    auto got = [&](int64_t bi, int64_t k1, int64_t g) {
      std::vector<const char*> lines(kPagedMaxStepLines);
      lines.resize(static_cast<size_t>(PagedNextStepLines(L, row, bi, k1, g, lines.data())));
      return lines;
    };
    const bool pairs = c.block == 16;
    const std::string what = std::string(TypeName(c.kt)) + "/" + std::string(TypeName(c.vt));
    EXPECT_EQ(got(1, row.n_keys, 0), pairs ? want({1, 2}, 0) : want({1}, 0)) << what;
    EXPECT_EQ(got(1, row.n_keys, 1), pairs ? want({1, 2}, 1) : want({1}, 1)) << what;
    EXPECT_EQ(got(2, row.n_keys, 1), want({2}, 1)) << what;  // block 3 is skipped for head 1
    EXPECT_EQ(got(2, row.n_keys, 0), pairs ? want({2, 3}, 0) : want({2}, 0)) << what;
    EXPECT_EQ(got(1, 2 * c.block, 0), want({1}, 0)) << what;  // block 2 is past k1
    EXPECT_TRUE(got(5, row.n_keys, 0).empty()) << what;
  }
}

TEST(PagedKvStoreTest, TypesAndShapesAreChecked) {
  EXPECT_FALSE(kv::ParseKvType("q5_1").ok());
  EXPECT_TRUE(kv::ParseKvType("bf16").ok());
  // q8_0 needs head sizes that are multiples of 32.
  auto st = kv::PagedKvStore::Create(1, 4, 8, kv::KvFormat{GgmlType::kQ8_0, GgmlType::kF16, 16}, 4);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("-ctk q8_0"), std::string::npos) << st.status().ToString();
  EXPECT_NE(st.status().message().find("head size 8"), std::string::npos) << st.status().ToString();
  EXPECT_FALSE(kv::PagedKvStore::Create(1, 4, 64, kv::KvFormat{GgmlType::kF16, GgmlType::kQ4_K, 16}, 4).ok());
  EXPECT_FALSE(kv::PagedKvStore::Create(1, 4, 64, kv::KvFormat{GgmlType::kF16, GgmlType::kF16, 16}, 0).ok());
  // Bytes: f16 keys and q8_0 values, 2 layers, 4 heads of 64, 16 positions per block.
  EXPECT_EQ(kv::PagedKvStore::BlockBytes(2, 4, 64, kv::KvFormat{GgmlType::kF16, GgmlType::kQ8_0, 16}),
            2u * 16 * 4 * (64 * 2 + 2 * 34));
}

TEST(PagedKvStoreTest, CopyBlockCopiesTheUsedPositionsOfEveryLayerAndHead) {
  // Two KV heads: the block is head-major, so the used rows are one run per head.
  auto st = kv::PagedKvStore::Create(2, 2, 32, kv::KvFormat{GgmlType::kF32, GgmlType::kF32, 4}, 3);
  ASSERT_TRUE(st.ok());
  std::vector<float> k(64), v(64);
  for (int l = 0; l < 2; ++l)
    for (int p = 0; p < 4; ++p) {
      for (int h = 0; h < 2; ++h) {
        std::fill_n(k.begin() + 32 * h, 32, float(100 * l + 10 * h + p));
        std::fill_n(v.begin() + 32 * h, 32, float(-100 * l - 10 * h - p));
      }
      st->Write(l, {1, p}, k.data(), v.data());
    }
  ASSERT_TRUE(st->CopyBlock(1, 2, 3).ok());
  for (int l = 0; l < 2; ++l) {
    const auto L = st->Layer(l);
    EXPECT_EQ(L.k_pos_bytes, 32 * 4);
    EXPECT_EQ(L.k_head_stride, 4 * 32 * 4);
    for (int h = 0; h < 2; ++h) {
      const float* kb = reinterpret_cast<const float*>(L.blocks[2] + h * L.k_head_stride);
      const float* vb = reinterpret_cast<const float*>(L.blocks[2] + L.v_offset + h * L.v_head_stride);
      for (int p = 0; p < 3; ++p) {
        EXPECT_EQ(kb[p * 32 + 5], float(100 * l + 10 * h + p));
        EXPECT_EQ(vb[p * 32 + 5], float(-100 * l - 10 * h - p));
      }
      EXPECT_EQ(kb[3 * 32], 0.0f);  // the unused position is not copied
      EXPECT_EQ(vb[3 * 32], 0.0f);
    }
  }
}

// The fold kernel's exp: within a few ulp of std::exp down to e^-86, e^-86 below (and for
// -inf, NaN), never a subnormal (each one costs a microcode assist on Intel cores).
TEST(PagedAttentionTest, Avx512ExpMatchesStdExpAndNeverReturnsSubnormals) {
  if (!KernelPathSupported(KernelPath::kAvx512)) GTEST_SKIP();
  std::vector<float> x;
  for (float v = -130.0f; v < 5.0f; v += 0.0137f) x.push_back(v);
  for (float v : {-86.0f, std::nextafter(-86.0f, -100.0f), -87.3f, -103.9f, -104.0f, -1e30f, -INFINITY, NAN, 0.0f,
                  -0.0f})
    x.push_back(v);
  std::vector<float> y(x.size());
  ExpRowAvx512(x.data(), static_cast<int64_t>(x.size()), y.data());
  float floor = 0;
  const float at = -86.0f;
  ExpRowAvx512(&at, 1, &floor);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NE(std::fpclassify(y[i]), FP_SUBNORMAL) << "exp(" << x[i] << ")";
    const double want = std::exp(double(x[i] >= -86.0f ? x[i] : -86.0f));
    ASSERT_LE(std::fabs(y[i] - want), 4e-7 * want) << "exp(" << x[i] << ") = " << y[i];
    if (!(x[i] >= -86.0f)) {
      ASSERT_EQ(y[i], floor) << "exp(" << x[i] << ")";
    }
  }
}

// Beside a key scoring far above the rest (an attention sink), the others' weights are
// below e^-86: attention still matches the double reference, on every path.
TEST(PagedAttentionTest, AKeyFarAboveTheRestMatchesTheReference) {
  const Shape s{8, 2, 64};
  std::mt19937 rng(11);
  std::vector<int32_t> blocks(40);
  std::iota(blocks.begin(), blocks.end(), 0);
  const int64_t n_pos = 300;
  Fixture f = Build(s, GgmlType::kF16, GgmlType::kF16, blocks, n_pos, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // Every query head of KV head g asks for u_g; key 0 of KV head g is 4 u_g (scores about
  // 4 * 64 / 8 = 32 sigma above the others').
  const int64_t G = s.n_head / s.n_head_kv, KV = s.n_head_kv * s.hd;
  std::vector<float> q(static_cast<size_t>(s.n_head * s.hd)), k0(static_cast<size_t>(KV)), v0(k0.size());
  for (int64_t g = 0; g < s.n_head_kv; ++g)
    for (int64_t i = 0; i < s.hd; ++i) {
      const float u = nd(rng);
      for (int64_t h = 0; h < G; ++h) q[static_cast<size_t>((g * G + h) * s.hd + i)] = 3 * u;
      k0[static_cast<size_t>(g * s.hd + i)] = 4 * u;
    }
  for (auto& x : v0) x = nd(rng);
  f.store.Write(0, {blocks[0], 0}, k0.data(), v0.data());
  std::vector<uint8_t> tmp(static_cast<size_t>(KV * 4));
  for (int64_t h = 0; h < s.n_head_kv; ++h) {  // what the store holds now
    QuantizeRow(GgmlType::kF16, k0.data() + h * s.hd, tmp.data(), s.hd);
    DequantizeRow(GgmlType::kF16, tmp.data(), f.k_dec.data() + h * s.hd, s.hd);
    QuantizeRow(GgmlType::kF16, v0.data() + h * s.hd, tmp.data(), s.hd);
    DequantizeRow(GgmlType::kF16, tmp.data(), f.v_dec.data() + h * s.hd, s.hd);
  }
  const AttentionShape shape{s.n_head, s.n_head_kv, s.hd, 1.0f / std::sqrt(float(s.hd))};
  const PagedQuery row{blocks.data(), n_pos};
  const auto want = Reference(s, f, q.data(), n_pos, nullptr);
  for (KernelPath path : {KernelPath::kScalar, KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (!KernelPathSupported(path)) continue;
    SCOPED_TRACE(std::string(KernelPathName(path)));
    ForceKernelPath(path);
    std::vector<float> out(q.size());
    PagedAttention(shape, f.store.Layer(0), std::span<const PagedQuery>(&row, 1), q.data(), out.data(), nullptr);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(out[i], want[i], 2e-5) << i;
  }
  ForceKernelPath(std::nullopt);
}

// Transposed (f16, bf16) keys: each position reads back as written, and a copy takes the
// used positions of every dimension, not the rest of the block.
TEST(PagedKvStoreTest, TransposedKeysReadBackAndCopyTheUsedPositions) {
  for (GgmlType kt : {GgmlType::kF16, GgmlType::kBF16}) {
    SCOPED_TRACE(std::string(TypeName(kt)));
    auto st = kv::PagedKvStore::Create(1, 2, 32, kv::KvFormat{kt, GgmlType::kF32, 5}, 3);
    ASSERT_TRUE(st.ok());
    ASSERT_TRUE(st->Layer(0).k_transposed);
    std::vector<float> k(64), v(64);
    auto key = [](int h, int p, int d) { return float(h * 64 + p * 8 + d % 8 + 1) * 0.5f; };  // exact in bf16, not 0
    for (int p = 0; p < 5; ++p) {
      for (int h = 0; h < 2; ++h)
        for (int d = 0; d < 32; ++d) k[static_cast<size_t>(32 * h + d)] = key(h, p, d);
      st->Write(0, {1, p}, k.data(), v.data());
    }
    ASSERT_TRUE(st->CopyBlock(1, 2, 3).ok());
    const auto L = st->Layer(0);
    std::vector<float> got(32);
    for (int h = 0; h < 2; ++h)
      for (int p = 0; p < 5; ++p) {
        kv::DequantizeKey(L, L.blocks[1], h, p, 32, got.data());
        for (int d = 0; d < 32; ++d) ASSERT_EQ(got[static_cast<size_t>(d)], key(h, p, d)) << h << " " << p << " " << d;
        kv::DequantizeKey(L, L.blocks[2], h, p, 32, got.data());
        for (int d = 0; d < 32; ++d)
          ASSERT_EQ(got[static_cast<size_t>(d)], p < 3 ? key(h, p, d) : 0.0f) << "copy " << h << " " << p << " " << d;
      }
  }
}

}  // namespace
}  // namespace tierlm
