// Unit tests for the parts of pipeline/stage_link that need no second rank: the sampling-parameter
// payload (every field, negative values and a 64-bit seed survive the round trip) and the
// repetition-penalty window the last rank keeps.
#include <gtest/gtest.h>

#include "core/error.h"
#include "mlx/mlx.h"
#include "pipeline/stage_link.h"

namespace {

TEST(StageLink, SamplingParamsRoundTrip) {
  k2::SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.min_p = 0.01f;
  p.repetition_penalty = 1.3f;
  p.repetition_context = 17;
  p.seed = 0xfedcba9876543210ull;
  const std::vector<int> v = k2::pack_sampling(p);
  ASSERT_EQ(v.size(), static_cast<size_t>(k2::kSamplingInts));
  const k2::SamplingParams q = k2::unpack_sampling(v);
  EXPECT_EQ(q.temperature, p.temperature);
  EXPECT_EQ(q.top_k, p.top_k);
  EXPECT_EQ(q.top_p, p.top_p);
  EXPECT_EQ(q.min_p, p.min_p);
  EXPECT_EQ(q.repetition_penalty, p.repetition_penalty);
  EXPECT_EQ(q.repetition_context, p.repetition_context);
  EXPECT_EQ(q.seed, p.seed);
  EXPECT_THROW(k2::unpack_sampling({1, 2, 3}), k2::Error);
}

TEST(StageLink, RecentTokensKeepsThePenaltyWindow) {
  k2::SamplingParams off;
  EXPECT_FALSE(k2::RecentTokens(off, {1, 2, 3}).array().has_value());
  k2::SamplingParams on;
  on.repetition_penalty = 1.2f;
  on.repetition_context = 3;
  k2::RecentTokens r(on, {1, 2, 3, 4, 5});
  r.push(6);
  auto a = r.array();
  ASSERT_TRUE(a.has_value());
  mlx::core::eval(*a);
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ(a->data<int32_t>()[0], 4);
  EXPECT_EQ(a->data<int32_t>()[2], 6);
}

}  // namespace
