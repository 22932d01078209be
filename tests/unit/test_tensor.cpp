// White-box checks of the 16-bit float conversions and the strided views.
#include <cmath>

#include "common/tensor.hpp"
#include "support/test_util.hpp"

namespace {

TEST(Float16, EveryPatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = s2ft::f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(s2ft::f16_to_f32(s2ft::f32_to_f16(f)))) << h;
      continue;
    }
    ASSERT_EQ(s2ft::f32_to_f16(f), h) << "pattern " << h;
    // Independent decode: (-1)^s * 2^(E-15) * 1.F, or subnormal 2^-24 * F.
    EXPECT_EQ(static_cast<double>(f), static_cast<double>(s2ft_test::from_f16(static_cast<uint16_t>(h)))) << h;
  }
}

TEST(Float16, RoundsToNearestEvenIncludingSubnormals) {
  s2ft_test::Random rng(11);
  for (int i = 0; i < 200000; ++i) {
    // Magnitudes from 2^-30 to 2^17 cover zero-flush, subnormals, normals and overflow.
    const double mag = std::ldexp(rng.uniform(1.0, 2.0), static_cast<int>(rng.below(48)) - 30);
    const float f = static_cast<float>(rng.next() & 1 ? -mag : mag);
    const uint16_t h = s2ft::f32_to_f16(f);
    const double back = s2ft::f16_to_f32(h);
    if (std::fabs(f) >= 65520.0) {
      EXPECT_TRUE(std::isinf(back)) << f;
      continue;
    }
    // No other f16 is closer; on a tie the chosen one is even.
    for (int d : {-1, 1}) {
      const uint16_t n = static_cast<uint16_t>(h + d);
      if ((n & 0x7c00) == 0x7c00 || ((h & 0x7fff) == 0 && d == -1)) continue;
      const double other = s2ft::f16_to_f32(n);
      if (std::signbit(other) != std::signbit(back) && other != 0) continue;
      const double eb = std::fabs(back - f), eo = std::fabs(other - f);
      ASSERT_LE(eb, eo) << "f=" << f << " h=" << h;
      if (eb == eo) {
        EXPECT_EQ(h & 1, 0) << "tie not to even for " << f;
      }
    }
  }
}

TEST(BFloat16, RoundTripAndRounding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = s2ft::bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(s2ft::bf16_to_f32(s2ft::f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(s2ft::f32_to_bf16(f), h);
  }
  EXPECT_EQ(s2ft::f32_to_bf16(1.0f + 1.0f / 256), s2ft::f32_to_bf16(1.0f));          // tie -> even
  EXPECT_EQ(s2ft::f32_to_bf16(1.0f + 3.0f / 256), s2ft::f32_to_bf16(1.0f + 4.0f / 256));  // tie -> even (up)
}

TEST(Matrix, ViewsAndOverlap) {
  std::vector<float> buf(6 * 8);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i);
  s2ft_tensor t;
  ASSERT_EQ(s2ft_tensor_cpu_f32_2d(&t, buf.data(), 6, 8), S2FT_OK);
  const s2ft::Matrix m = s2ft::check_matrix(&t, "t", s2ft_device{S2FT_DEVICE_CPU, 0});
  const s2ft::Matrix c = m.col_range(2, 3), r = m.row_range(4, 2);
  EXPECT_EQ(c.get(1, 0), 10.0f);
  EXPECT_EQ(r.get(0, 7), 39.0f);
  EXPECT_TRUE(c.blas_ready());
  EXPECT_FALSE(s2ft::overlaps(m.row_range(0, 2), m.row_range(2, 2)));
  EXPECT_TRUE(s2ft::overlaps(m.row_range(0, 3), m.row_range(2, 2)));
  EXPECT_FALSE(s2ft::overlaps(m.row_range(0, 0), m));  // empty views never overlap
}

}  // namespace
