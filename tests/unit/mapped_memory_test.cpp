#include "core/mapped_memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

namespace tierlm {
namespace {

TEST(MappedMemoryTest, RoundsUpToPagesAndStartsZeroed) {
  auto m = MappedMemory::Create(5000, "a test buffer");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_NE(m->data(), nullptr);
  EXPECT_EQ(m->size(), 8192u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m->data()) % 4096, 0u);
  for (uint64_t i = 0; i < m->size(); ++i) ASSERT_EQ(m->data()[i], 0) << "byte " << i;
  for (uint64_t i = 0; i < m->size(); ++i) m->data()[i] = static_cast<uint8_t>(i * 7);
  EXPECT_EQ(m->data()[8191], static_cast<uint8_t>(8191 * 7));
}

TEST(MappedMemoryTest, ZeroBytesIsEmpty) {
  auto m = MappedMemory::Create(0, "nothing");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->data(), nullptr);
  EXPECT_EQ(m->size(), 0u);
}

TEST(MappedMemoryTest, MoveHandsOverTheMapping) {
  auto m = MappedMemory::Create(4096, "a test buffer");
  ASSERT_TRUE(m.ok());
  uint8_t* p = m->data();
  p[10] = 42;
  MappedMemory a = std::move(*m);
  EXPECT_EQ(m->data(), nullptr);
  EXPECT_EQ(m->size(), 0u);
  EXPECT_EQ(a.data(), p);
  EXPECT_EQ(a.data()[10], 42);
  auto other = MappedMemory::Create(4096 * 3, "another");
  ASSERT_TRUE(other.ok());
  a = std::move(*other);  // unmaps the first mapping, takes the second
  EXPECT_EQ(a.size(), 4096u * 3);
  EXPECT_EQ(a.data()[0], 0);
}

TEST(MappedMemoryTest, AnImpossibleSizeIsAClearError) {
  auto m = MappedMemory::Create(uint64_t{1} << 62, "an absurd buffer");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(m.status().message().find("an absurd buffer"), std::string::npos) << m.status().ToString();
}

}  // namespace
}  // namespace tierlm
