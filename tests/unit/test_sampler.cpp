// Sampling filters and determinism: greedy is argmax, top-k / top-p / min-p keep exactly the
// expected sets, the repetition penalty follows the CTRL rule, a seed fixes the draws, forced choices
// constrain the first tokens and log-probabilities are those of the raw logits.
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

// Forced choices: until one sequence is complete only its continuations can be drawn, even against
// the logits; afterwards sampling is free again.
TEST(Sampler, ForcedChoicesConstrainTheFirstTokens) {
  k2::SamplingParams p;
  p.forced_choices = {{3, 4}, {3, 5}, {1}};
  k2::Sampler s(p);
  const mx::array best0 = logits({9, 0, 0, 2, 1, 3});  // argmax 0 is not allowed; of {3, 1}, 3 is best
  auto draw = [&](const mx::array& l) { return static_cast<int>(s.sample(l, std::nullopt).item<uint32_t>()); };
  EXPECT_EQ(draw(best0), 3);
  EXPECT_EQ(draw(best0), 5);  // after 3: {4, 5}, and 5 has the larger logit
  EXPECT_EQ(draw(best0), 0);  // complete: free
  k2::Sampler t(p);
  EXPECT_EQ(static_cast<int>(t.sample(logits({9, 8, 0, 2, 1, 3}), std::nullopt).item<uint32_t>()), 1);
  EXPECT_EQ(static_cast<int>(t.sample(logits({9, 8, 0, 2, 1, 3}), std::nullopt).item<uint32_t>()), 0);
}

// Log-probabilities are the log-softmax of the raw logits (worked out here in double), whatever the
// temperature, with the alternatives most likely first; taken in the order the tokens were drawn.
TEST(Sampler, LogprobsOfTheRawDistribution) {
  const std::vector<float> v = {1.0f, 3.0f, 2.0f, -1.0f};
  double z = 0;
  for (float x : v) z += std::exp(static_cast<double>(x));
  auto lp = [&](int i) { return static_cast<float>(v[i] - std::log(z)); };
  k2::SamplingParams p;
  p.temperature = 0.7f;
  p.logprobs = 2;
  k2::Sampler s(p);
  mx::array a = s.sample(logits(v), std::nullopt);
  mx::array b = s.sample(logits({0.0f, 0.0f, 0.0f, 5.0f}), std::nullopt);
  mx::eval(a, b);
  const k2::TokenLogprobs first = s.take_logprobs();
  EXPECT_EQ(first.token, static_cast<int>(a.item<uint32_t>()));
  EXPECT_NEAR(first.logprob, lp(first.token), 1e-6);
  ASSERT_EQ(first.top.size(), 2u);
  EXPECT_EQ(first.top[0].first, 1);
  EXPECT_NEAR(first.top[0].second, lp(1), 1e-6);
  EXPECT_EQ(first.top[1].first, 2);
  EXPECT_EQ(s.take_logprobs().token, static_cast<int>(b.item<uint32_t>()));
  EXPECT_THROW(s.take_logprobs(), k2::Error);
  const std::vector<k2::TokenLogprobs> rows = k2::sequence_logprobs(mx::stack({logits(v), logits(v)}, 0), {2, 3}, 1);
  EXPECT_NEAR(rows[0].logprob, lp(2), 1e-6);
  EXPECT_NEAR(rows[1].logprob, lp(3), 1e-6);
  EXPECT_EQ(rows[1].top[0].first, 1);
}
