// The decode attention rate probe: a rate for every KV type, and clear errors for shapes it
// cannot measure.
#include "kernels/attention_rate.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tierlm {
namespace {

TEST(AttentionRateTest, MeasuresEveryKvType) {
  ThreadPool pool(2);
  const AttentionShape s{8, 2, 64, 0.125f};
  for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    SCOPED_TRACE(std::string(TypeName(t)));
    auto r = MeasurePagedDecodeRate(s, kv::KvFormat{t, t, 16}, 300, &pool, 0.02);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(std::isfinite(*r));
    EXPECT_GT(*r, 0.0);
  }
  EXPECT_DOUBLE_EQ(DecodeAttentionFlops(s, 300), 4.0 * 8 * 64 * 300);
}

TEST(AttentionRateTest, RefusesWhatItCannotMeasure) {
  ThreadPool pool(1);
  const kv::KvFormat f16{GgmlType::kF16, GgmlType::kF16, 16};
  auto r = MeasurePagedDecodeRate(AttentionShape{8, 2, 64, 0.125f}, f16, 0, &pool);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = MeasurePagedDecodeRate(AttentionShape{6, 4, 64, 0.125f}, f16, 16, &pool);  // 6 heads over 4
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = MeasurePagedDecodeRate(AttentionShape{8, 2, 8, 0.3f}, kv::KvFormat{GgmlType::kQ8_0, GgmlType::kF16, 16}, 16,
                             &pool);  // q8_0 needs heads of a multiple of 32
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("-ctk"), std::string::npos) << r.status().ToString();
}

}  // namespace
}  // namespace tierlm
