// Sampling filters and determinism: greedy is argmax, top-k / top-p / min-p keep exactly the
// expected sets, the repetition penalty follows the CTRL rule, and a seed fixes the draws.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "core/error.h"
#include "engine/sampler.h"
#include "mlx/mlx.h"

namespace mx = mlx::core;

namespace {

std::vector<float> values(const mx::array& a) {
  mx::array f = mx::astype(a, mx::float32);
  mx::eval(f);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.size());
}

mx::array logits(const std::vector<float>& v) { return mx::array(v.data(), {static_cast<int>(v.size())}, mx::float32); }

int kept(const std::vector<float>& v) {
  int n = 0;
  for (float x : v) n += std::isfinite(x);
  return n;
}

}  // namespace

TEST(Sampler, GreedyIsArgmax) {
  k2::Sampler s(k2::SamplingParams{});
  EXPECT_EQ(s.sample(logits({0.1f, 2.0f, -1.0f, 1.9f}), std::nullopt).item<uint32_t>(), 1u);
}

TEST(Sampler, TopKKeepsTheKLargest) {
  auto v = values(k2::apply_top_k(logits({0.1f, 2.0f, -1.0f, 1.9f, 0.5f}), 2));
  EXPECT_EQ(kept(v), 2);
  EXPECT_FLOAT_EQ(v[1], 2.0f);
  EXPECT_FLOAT_EQ(v[3], 1.9f);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  // probabilities 0.5, 0.3, 0.15, 0.05 (as logs)
  std::vector<float> l{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  EXPECT_EQ(kept(values(k2::apply_top_p(logits(l), 0.5f))), 1);
  EXPECT_EQ(kept(values(k2::apply_top_p(logits(l), 0.7f))), 2);
  EXPECT_EQ(kept(values(k2::apply_top_p(logits(l), 0.9f))), 3);
  EXPECT_EQ(kept(values(k2::apply_top_p(logits(l), 0.99f))), 4);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::vector<float> l{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  auto v = values(k2::apply_min_p(logits(l), 0.25f));  // threshold 0.125
  EXPECT_EQ(kept(v), 3);
  EXPECT_FALSE(std::isfinite(v[3]));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  std::vector<int> recent{0, 2};
  auto v = values(k2::apply_repetition_penalty(logits({2.0f, 1.0f, -1.0f}),
                                               mx::array(recent.data(), {2}, mx::int32), 2.0f));
  EXPECT_FLOAT_EQ(v[0], 1.0f);
  EXPECT_FLOAT_EQ(v[1], 1.0f);
  EXPECT_FLOAT_EQ(v[2], -2.0f);
}

TEST(Sampler, SeedFixesTheDrawsAndFiltersAreRespected) {
  k2::SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;
  p.seed = 42;
  std::vector<float> l(50, 0.0f);
  l[7] = 1.0f;
  l[11] = 1.0f;
  l[13] = 1.0f;
  k2::Sampler a(p), b(p);
  std::vector<uint32_t> da, db;
  for (int i = 0; i < 30; ++i) {
    da.push_back(a.sample(logits(l), std::nullopt).item<uint32_t>());
    db.push_back(b.sample(logits(l), std::nullopt).item<uint32_t>());
  }
  EXPECT_EQ(da, db);
  for (auto t : da) EXPECT_TRUE(t == 7 || t == 11 || t == 13) << t;
  // All three survivors are equally likely: each should appear in 30 draws.
  for (uint32_t want : {7u, 11u, 13u}) EXPECT_NE(std::find(da.begin(), da.end(), want), da.end());
}

TEST(Sampler, RejectsBadParameters) {
  k2::SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(p.validate(), k2::InputError);
  p = {};
  p.temperature = -1.0f;
  EXPECT_THROW(p.validate(), k2::InputError);
  p = {};
  p.min_p = 1.0f;
  EXPECT_THROW(p.validate(), k2::InputError);
  p = {};
  p.repetition_penalty = 0.0f;
  EXPECT_THROW(p.validate(), k2::InputError);
}
