// YaRN frequency tables against the hand-computed values in kimi-k2-spec.md §4.2, and the rotation
// against an explicit interleaved-pair rotation.
#include <cmath>

#include <gtest/gtest.h>

#include "mlx/mlx.h"
#include "model/rope.h"

namespace mx = mlx::core;

namespace {

k2::YarnScaling yarn(double factor, double beta_fast, double beta_slow) {
  k2::YarnScaling y;
  y.factor = factor;
  y.beta_fast = beta_fast;
  y.beta_slow = beta_slow;
  y.original_max_position_embeddings = 4096;
  y.mscale = 1.0;
  y.mscale_all_dim = 1.0;
  return y;
}

}  // namespace

TEST(Yarn, KimiK2CorrectionRangeIsAHardStep) {
  // Spec §4.2: find_correction_dim(1) = 19.165 for both betas -> low 19, high 20.
  auto [low, high] = k2::yarn_correction_range(64, 50000.0, yarn(32, 1, 1));
  EXPECT_EQ(low, 19);
  EXPECT_EQ(high, 20);
}

TEST(Yarn, KimiK2Frequencies) {
  const auto f = k2::yarn_inv_freq(64, 50000.0, yarn(32, 1, 1));
  ASSERT_EQ(f.size(), 32u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[19], 1.6218e-3, 1e-7);                      // unscaled below the step
  EXPECT_NEAR(f[20], 3.614e-5, 1e-8);                       // divided by the factor above it
  EXPECT_NEAR(k2::yarn_inv_freq(64, 50000.0, yarn(64, 1, 1))[20], 1.807e-5, 1e-8);
  EXPECT_NEAR(f[31], std::pow(50000.0, -62.0 / 64) / 32, 1e-15);
}

TEST(Yarn, OtherConfigsCorrectionRanges) {
  auto [l25, h25] = k2::yarn_correction_range(64, 50000.0, yarn(64, 32, 1));  // K2.5 / K2.6
  EXPECT_EQ(l25, 8);
  EXPECT_EQ(h25, 20);
  auto [ld, hd] = k2::yarn_correction_range(64, 10000.0, yarn(40, 32, 1));  // DeepSeek-V3
  EXPECT_EQ(ld, 10);
  EXPECT_EQ(hd, 23);
}

TEST(Yarn, LinearRampBetweenLowAndHigh) {
  const auto f = k2::yarn_inv_freq(64, 10000.0, yarn(40, 32, 1));
  const auto plain = k2::plain_inv_freq(64, 10000.0);
  for (int i = 0; i <= 10; ++i) EXPECT_DOUBLE_EQ(f[i], plain[i]) << i;
  for (int i = 23; i < 32; ++i) EXPECT_NEAR(f[i], plain[i] / 40, 1e-18) << i;
  const double ramp = (15.0 - 10.0) / (23.0 - 10.0);
  EXPECT_NEAR(f[15], plain[15] * (1 - ramp) + plain[15] / 40 * ramp, 1e-15);
}

TEST(Rope, RotatesInterleavedPairsAtAbsolutePositions) {
  k2::ModelConfig c;
  c.qk_rope_head_dim = 8;
  c.rope_theta = 100.0;
  k2::Rope rope(c);
  const int offset = 5;
  std::vector<float> x(2 * 8);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * static_cast<float>(i) - 0.5f;
  mx::array in(x.data(), mx::Shape{1, 1, 2, 8}, mx::float32);  // [B, heads, L, dims]
  mx::array out = rope.apply(in, offset);
  mx::eval(out);
  const float* o = out.data<float>();
  const auto inv = k2::plain_inv_freq(8, 100.0);
  for (int t = 0; t < 2; ++t)
    for (int i = 0; i < 4; ++i) {
      const double angle = (offset + t) * inv[i];
      const double a = x[t * 8 + 2 * i], b = x[t * 8 + 2 * i + 1];
      EXPECT_NEAR(o[t * 8 + 2 * i], a * std::cos(angle) - b * std::sin(angle), 1e-5);
      EXPECT_NEAR(o[t * 8 + 2 * i + 1], a * std::sin(angle) + b * std::cos(angle), 1e-5);
    }
}
