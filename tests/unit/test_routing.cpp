// MoE routing against hand-computed cases (spec §5): bias for selection only, normalised unbiased
// weights times routed_scaling_factor, and DeepSeek-V3's group-limited selection.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "mlx/mlx.h"
#include "model/moe.h"

namespace mx = mlx::core;

namespace {

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Sorted (index, weight) pairs of a routing result for one token.
std::vector<std::pair<uint32_t, float>> decode(const std::pair<mx::array, mx::array>& r) {
  mx::array idx = mx::flatten(r.first), w = mx::flatten(r.second);
  mx::eval(idx, w);
  std::vector<std::pair<uint32_t, float>> out;
  for (size_t i = 0; i < idx.size(); ++i) out.emplace_back(idx.data<uint32_t>()[i], w.data<float>()[i]);
  std::sort(out.begin(), out.end());
  return out;
}

k2::ModelConfig config(int experts, int k, int groups, int topk_group, double scaling) {
  k2::ModelConfig c;
  c.n_routed_experts = experts;
  c.num_experts_per_tok = k;
  c.n_group = groups;
  c.topk_group = topk_group;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = scaling;
  return c;
}

}  // namespace

TEST(Routing, BiasSelectsButDoesNotWeigh) {
  // Logits favour experts 0 and 1; the bias pushes expert 5 above expert 1 for selection.
  const std::vector<float> logits{2.0f, 1.0f, -1.0f, 0.0f, -2.0f, 0.5f, -0.5f, -3.0f};
  const std::vector<float> bias{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.2f, 0.0f, 0.0f};
  auto r = k2::select_experts(config(8, 2, 1, 1, 2.827), mx::array(logits.data(), {1, 8}, mx::float32),
                              mx::array(bias.data(), {8}, mx::float32));
  // Selection scores: sig(2)=0.881, sig(1)=0.731, sig(0.5)+0.2=0.822 -> experts 0 and 5.
  const double w0 = sig(2.0), w5 = sig(0.5);  // unbiased
  auto got = decode(r);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 0u);
  EXPECT_EQ(got[1].first, 5u);
  EXPECT_NEAR(got[0].second, w0 / (w0 + w5) * 2.827, 1e-5);
  EXPECT_NEAR(got[1].second, w5 / (w0 + w5) * 2.827, 1e-5);
}

TEST(Routing, GroupLimitedSelectionDropsWeakGroups) {
  // 8 experts in 4 groups of 2; keep the 2 best groups (by the sum of their top-2), then top-2 experts.
  // Group sums of sigmoid scores: g0 {0,1}: high single expert 0 but weak partner; g1 {2,3}: both good.
  const std::vector<float> logits{3.0f, -4.0f, 1.5f, 1.4f, 1.0f, 0.9f, -2.0f, -2.0f};
  const std::vector<float> bias(8, 0.0f);
  auto r = k2::select_experts(config(8, 2, 4, 2, 1.0), mx::array(logits.data(), {1, 8}, mx::float32),
                              mx::array(bias.data(), {8}, mx::float32));
  // Group scores: g0 = sig(3)+sig(-4) = 0.9526+0.0180 = 0.971; g1 = sig(1.5)+sig(1.4) = 0.818+0.802 = 1.620;
  // g2 = sig(1)+sig(.9) = 0.731+0.711 = 1.442; g3 = 0.238. Keep g1, g2 -> top-2 experts 2 and 3,
  // even though expert 0 has the highest individual score.
  auto got = decode(r);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, 2u);
  EXPECT_EQ(got[1].first, 3u);
  const double a = sig(1.5), b = sig(1.4);
  EXPECT_NEAR(got[0].second, a / (a + b), 1e-5);
  EXPECT_NEAR(got[1].second, b / (a + b), 1e-5);
}

TEST(Routing, WithoutGroupLimitTheBestExpertWins) {
  const std::vector<float> logits{3.0f, -4.0f, 1.5f, 1.4f, 1.0f, 0.9f, -2.0f, -2.0f};
  const std::vector<float> bias(8, 0.0f);
  auto got = decode(k2::select_experts(config(8, 2, 1, 1, 1.0), mx::array(logits.data(), {1, 8}, mx::float32),
                                       mx::array(bias.data(), {8}, mx::float32)));
  EXPECT_EQ(got[0].first, 0u);
  EXPECT_EQ(got[1].first, 2u);
}
