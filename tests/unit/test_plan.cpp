// Unit tests for pipeline/layer_costs and pipeline/plan: sizes computed from the real Kimi-K2 config
// against the per-module numbers of kimi-k2-spec.md §8, the DP splits against brute force, the founding
// case (192 GB + 512 GB), infeasibility messages and the size / node / range parsers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"
#include "pipeline/layer_costs.h"
#include "pipeline/plan.h"

#ifndef K2_SHARED_DATA_DIR
#error "K2_SHARED_DATA_DIR must point at shared/data"
#endif

namespace {
namespace fs = std::filesystem;
using k2::QuantSpec;

k2::ModelConfig kimi() {
  std::ifstream in(fs::path(K2_SHARED_DATA_DIR) / "kimi-k2-instruct.config.json");
  if (!in) throw std::runtime_error("test data missing: kimi-k2-instruct.config.json");
  return k2::parse_model_config(nlohmann::json::parse(in), "kimi-k2-instruct.config.json");
}

k2::QuantRecipe affine(int bits, int group = 64) {
  k2::QuantRecipe r;
  r.global = QuantSpec{bits, group, "affine"};
  return r;
}

constexpr double MB = 1e6, GB = 1e9;

// spec §8: "one expert 24.8 / 19.3 MB; all 384 experts 9.51 / 7.40 GB; lm_head 660.6 / 513.8 MB;
// attention 56.9 / 44.2 MB; dense MLP 223.0 / 173.4 MB" at 4-bit / 3-bit group 64.
TEST(LayerCosts, ModuleSizesMatchSpecAt4And3Bit) {
  const auto q4 = QuantSpec{4, 64, "affine"}, q3 = QuantSpec{3, 64, "affine"};
  auto expert = [](const QuantSpec& q) {
    return 2 * k2::matrix_bytes(1, 2048, 7168, q, 2) + k2::matrix_bytes(1, 7168, 2048, q, 2);
  };
  EXPECT_NEAR(expert(q4) / MB, 24.8, 0.05);
  EXPECT_NEAR(expert(q3) / MB, 19.3, 0.05);
  EXPECT_NEAR(384 * expert(q4) / GB, 9.51, 0.005);
  EXPECT_NEAR(384 * expert(q3) / GB, 7.40, 0.005);
  EXPECT_NEAR(k2::matrix_bytes(1, 163840, 7168, q4, 2) / MB, 660.6, 0.05);
  EXPECT_NEAR(k2::matrix_bytes(1, 163840, 7168, q3, 2) / MB, 513.8, 0.05);
  EXPECT_NEAR(k2::matrix_bytes(1, 163840, 7168, std::nullopt, 2) / MB, 2348.8, 0.05);

  const k2::ModelConfig c = kimi();
  for (auto [bits, attn_mb, dense_mb, head_mb] : {std::tuple{4, 56.9, 223.0, 660.6}, std::tuple{3, 44.2, 173.4, 513.8}}) {
    const k2::ModelCosts m = k2::costs_from_config(c, affine(bits));
    ASSERT_EQ(m.layers.size(), 61u);
    // Layer 0 = attention + dense MLP (+ 2 norms, 4 KB); a MoE layer = attention + router + 385 experts.
    const double dense = 3 * k2::matrix_bytes(1, 18432, 7168, QuantSpec{bits, 64, "affine"}, 2);
    EXPECT_NEAR(dense / MB, dense_mb, 0.05);
    const double norms = (2 * 7168 + 1536 + 512) * 2;  // input/post-attention and latent norms, bf16
    EXPECT_NEAR((m.layers[0].weight_bytes - dense - norms) / MB, attn_mb, 0.05) << bits << "-bit attention";
    const double routed = 384 * expert(QuantSpec{bits, 64, "affine"}), shared = expert(QuantSpec{bits, 64, "affine"});
    const double router = 384 * 7168 * 2 + 384 * 4;
    EXPECT_NEAR(m.layers[1].weight_bytes - routed - shared - router, m.layers[0].weight_bytes - dense, 1.0);
    // Active per token: 8 routed + 1 shared + the bf16 router ("228.5 / 178.9 MB" in §8).
    EXPECT_NEAR((m.layers[1].read_bytes - (m.layers[0].weight_bytes - dense)) / MB, bits == 4 ? 228.5 : 178.9, 0.1);
    EXPECT_NEAR((m.head_bytes - 7168 * 2) / MB, head_mb, 0.05);
  }
}

// spec §8 whole-model totals: 577.6 GB at 4-bit g64, 449.3 GB at 3-bit g64.
TEST(LayerCosts, WholeModelTotals) {
  const k2::ModelConfig c = kimi();
  EXPECT_NEAR(k2::costs_from_config(c, affine(4)).total_weight_bytes() / GB, 577.6, 0.6);
  EXPECT_NEAR(k2::costs_from_config(c, affine(3)).total_weight_bytes() / GB, 449.3, 0.6);
  // The original release's FP8 (1 byte + float32 128x128 block scales; bf16 embedding / lm_head): ≈1,029 GB.
  const auto fp8 = k2::declared_recipe(c);
  ASSERT_TRUE(fp8.has_value());
  EXPECT_NEAR(k2::costs_from_config(c, *fp8).total_weight_bytes() / GB, 1029.0, 3.0);
}

TEST(LayerCosts, OverridesMatchByPathSuffixAndGlob) {
  const k2::ModelConfig c = kimi();
  k2::QuantRecipe r = affine(3);
  r.overrides.push_back(k2::parse_quant_override("lm_head=6:64"));
  r.overrides.push_back(k2::parse_quant_override("model.layers.*.mlp.switch_mlp.down_proj=4:64"));
  r.overrides.push_back(k2::parse_quant_override("model.layers.0.self_attn.o_proj=none"));
  const k2::ModelCosts base = k2::costs_from_config(c, affine(3)), m = k2::costs_from_config(c, r);
  EXPECT_NEAR(m.head_bytes - base.head_bytes,
              k2::matrix_bytes(1, 163840, 7168, QuantSpec{6, 64, "affine"}, 2) - k2::matrix_bytes(1, 163840, 7168, QuantSpec{3, 64, "affine"}, 2), 1.0);
  const double down_delta = k2::matrix_bytes(384, 7168, 2048, QuantSpec{4, 64, "affine"}, 2) -
                            k2::matrix_bytes(384, 7168, 2048, QuantSpec{3, 64, "affine"}, 2);
  EXPECT_NEAR(m.layers[5].weight_bytes - base.layers[5].weight_bytes, down_delta, 1.0);
  const double o_delta = k2::matrix_bytes(1, 7168, 8192, std::nullopt, 2) - k2::matrix_bytes(1, 7168, 8192, QuantSpec{3, 64, "affine"}, 2);
  EXPECT_NEAR(m.layers[0].weight_bytes - base.layers[0].weight_bytes, o_delta, 1.0);
  EXPECT_EQ(m.layers[7].weight_bytes - base.layers[7].weight_bytes, m.layers[5].weight_bytes - base.layers[5].weight_bytes);
  // "lm_head" must not match "model.layers.1.self_attn.q_a_proj"; suffix matches stop at a dot.
  k2::QuantRecipe dots = affine(3);
  dots.overrides.push_back(k2::parse_quant_override("proj=8:64"));
  EXPECT_EQ(dots.for_module("model.layers.1.self_attn.o_proj"), (QuantSpec{3, 64, "affine"}));
  dots.overrides.push_back(k2::parse_quant_override("self_attn.o_proj=8:64"));
  EXPECT_EQ(dots.for_module("model.layers.1.self_attn.o_proj"), (QuantSpec{8, 64, "affine"}));
  EXPECT_EQ(r.for_module("model.layers.1.self_attn.q_a_proj"), (QuantSpec{3, 64, "affine"}));
}

TEST(LayerCosts, ParseQuantRejectsBadValues) {
  EXPECT_EQ(*k2::parse_quant("4"), (QuantSpec{4, 64, "affine"}));
  EXPECT_EQ(*k2::parse_quant("3:32"), (QuantSpec{3, 32, "affine"}));
  EXPECT_FALSE(k2::parse_quant("none").has_value());
  EXPECT_THROW(k2::parse_quant("7:64"), k2::InputError);
  EXPECT_THROW(k2::parse_quant("4:48"), k2::InputError);
  EXPECT_THROW(k2::parse_quant("four"), k2::InputError);
  EXPECT_THROW(k2::parse_quant_override("lm_head"), k2::InputError);
}

// The founding case: Kimi-K2 on an M2 Ultra 192 GB + M3 Ultra 512 GB at 40,000 tokens.
TEST(Plan, FoundingCase3BitFitsWithTheM2Under160GB) {
  const k2::ModelConfig c = kimi();
  const k2::ModelCosts costs = k2::costs_from_config(c, affine(3));
  std::vector<k2::NodeSpec> nodes = {k2::parse_node("m2:192GB:800"), k2::parse_node("m3:512GB:819")};
  for (auto strategy : {k2::Strategy::memory, k2::Strategy::time}) {
    k2::PlanRequest r;
    r.strategy = strategy;
    const k2::Plan p = k2::make_plan(c, costs, nodes, r);
    ASSERT_TRUE(p.feasible) << p.problem;
    ASSERT_EQ(p.stages.size(), 2u);
    EXPECT_EQ(p.stages[0].first, 0);
    EXPECT_EQ(p.stages[0].last, p.stages[1].first);
    EXPECT_EQ(p.stages[1].last, 61);
    EXPECT_TRUE(p.stages[0].embed && p.stages[1].head);
    EXPECT_LT(p.stages[0].total(), 160 * GB);
    for (const auto& s : p.stages) EXPECT_LE(s.total(), s.usable) << s.node;
  }
}

TEST(Plan, FoundingCase4BitNeedsRaisedWiredLimits) {
  const k2::ModelConfig c = kimi();
  const k2::ModelCosts costs = k2::costs_from_config(c, affine(4));
  std::vector<k2::NodeSpec> nodes = {k2::parse_node("m2:192GB:800"), k2::parse_node("m3:512GB:819")};
  const k2::Plan tight = k2::make_plan(c, costs, nodes, {});
  EXPECT_FALSE(tight.feasible);
  EXPECT_NE(tight.problem.find("missing"), std::string::npos);
  EXPECT_NE(tight.problem.find("node m3"), std::string::npos) << tight.problem;
  nodes[0].usable_bytes = 160 * GB;
  nodes[1].usable_bytes = 480 * GB;
  const k2::Plan raised = k2::make_plan(c, costs, nodes, {});
  ASSERT_TRUE(raised.feasible) << raised.problem;
  EXPECT_LE(raised.stages[0].total(), 160 * GB);
  EXPECT_LE(raised.stages[1].total(), 480 * GB);
}

// Synthetic model: DP results equal exhaustive search over all contiguous splits.
TEST(Plan, SplitsAreOptimalAgainstBruteForce) {
  k2::ModelConfig c = kimi();
  c.num_hidden_layers = 9;
  k2::ModelCosts costs;
  const double w[9] = {3, 9, 9, 4, 9, 9, 2, 9, 9};
  for (double x : w) costs.layers.push_back({x * GB, x * GB / 10});
  costs.embed_bytes = 1 * GB;
  costs.head_bytes = 2 * GB;
  costs.head_bytes = 2 * GB;
  std::vector<k2::NodeSpec> nodes = {{"a", 40 * GB, 100 * GB, std::nullopt},
                                     {"b", 30 * GB, 400 * GB, std::nullopt},
                                     {"c", 60 * GB, 200 * GB, std::nullopt}};
  k2::PlanRequest r;
  r.context = 16;
  r.usable_fraction = 1.0;
  auto eval = [&](int a, int b, bool time, double& worst_fill, double& worst_time) {
    const int cut[4] = {0, a, b, 9};
    worst_fill = worst_time = 0;
    for (int i = 0; i < 3; ++i) {
      const auto s = k2::stage_cost(c, costs, nodes[i], cut[i], cut[i + 1], r);
      worst_fill = std::max(worst_fill, s.total() / s.usable);
      worst_time = std::max(worst_time, s.total() <= s.usable ? s.seconds : 1e30);
    }
  };
  double best_fill = 1e30, best_time = 1e30;
  for (int a = 1; a < 8; ++a)
    for (int b = a + 1; b < 9; ++b) {
      double f, t;
      eval(a, b, false, f, t);
      best_fill = std::min(best_fill, f);
      best_time = std::min(best_time, t);
    }
  r.strategy = k2::Strategy::memory;
  const k2::Plan pm = k2::make_plan(c, costs, nodes, r);
  double f, t;
  eval(pm.stages[0].last, pm.stages[1].last, false, f, t);
  EXPECT_DOUBLE_EQ(f, best_fill);
  r.strategy = k2::Strategy::time;
  const k2::Plan pt = k2::make_plan(c, costs, nodes, r);
  ASSERT_TRUE(pt.feasible);
  eval(pt.stages[0].last, pt.stages[1].last, true, f, t);
  EXPECT_DOUBLE_EQ(t, best_time);
  EXPECT_DOUBLE_EQ(pt.slowest_stage_seconds(), best_time);
  EXPECT_LT(pt.slowest_stage_seconds(), pm.slowest_stage_seconds());  // the time plan is strictly faster here
}

TEST(Plan, RequestErrors) {
  const k2::ModelConfig c = kimi();
  const k2::ModelCosts costs = k2::costs_from_config(c, affine(4));
  EXPECT_THROW(k2::make_plan(c, costs, {}, {}), k2::InputError);
  k2::PlanRequest r;
  r.strategy = k2::Strategy::time;
  try {
    k2::make_plan(c, costs, {k2::parse_node("m2:192"), k2::parse_node("m3:512:800")}, r);
    ADD_FAILURE() << "expected InputError";
  } catch (const k2::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("m2"), std::string::npos) << e.what();
  }
  std::vector<k2::NodeSpec> many(62, k2::parse_node("x:10"));
  EXPECT_THROW(k2::make_plan(c, costs, many, {}), k2::InputError);
  k2::PlanRequest zero_chunk;
  zero_chunk.prefill_chunk = 0;  // would make the workspace estimate meaningless
  EXPECT_THROW(k2::make_plan(c, costs, {k2::parse_node("m3:512")}, zero_chunk), k2::InputError);
}

TEST(Plan, NodesHaveUniqueNamesAndUsableWithinRam) {
  auto message = [](const std::vector<k2::NodeSpec>& nodes) {
    try {
      k2::check_nodes(nodes);
    } catch (const k2::InputError& e) {
      return std::string(e.what());
    }
    return std::string("<accepted>");
  };
  EXPECT_EQ(message({k2::parse_node("m2:192GB"), k2::parse_node("m3:512GB")}), "<accepted>");
  EXPECT_NE(message({k2::parse_node("m2:192GB"), k2::parse_node("m2:512GB")}).find("both named 'm2'"), std::string::npos);
  k2::NodeSpec big = k2::parse_node("m2:192GB");
  big.usable_bytes = 900e9;
  EXPECT_NE(message({big}).find("usable memory 900.0 GB is more than its 192.0 GB"), std::string::npos) << message({big});
}

TEST(Plan, ParsesSizesNodesAndRanges) {
  EXPECT_DOUBLE_EQ(k2::parse_size("192"), 192e9);
  EXPECT_DOUBLE_EQ(k2::parse_size("192GB"), 192e9);
  EXPECT_DOUBLE_EQ(k2::parse_size("1GiB"), 1073741824.0);
  EXPECT_DOUBLE_EQ(k2::parse_size("0.5TB"), 500e9);
  EXPECT_THROW(k2::parse_size("12XB"), k2::InputError);
  EXPECT_THROW(k2::parse_size("-3GB"), k2::InputError);
  try {
    k2::parse_size("-192GB");
    ADD_FAILURE() << "accepted a negative size";
  } catch (const k2::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("is negative"), std::string::npos) << e.what();  // not "unknown unit"
  }
  EXPECT_THROW(k2::parse_size("GB"), k2::InputError);
  const k2::NodeSpec n = k2::parse_node("m3:512GB:819");
  EXPECT_EQ(n.name, "m3");
  EXPECT_DOUBLE_EQ(n.memory_bytes, 512e9);
  EXPECT_DOUBLE_EQ(n.bandwidth, 819e9);
  EXPECT_DOUBLE_EQ(n.usable(0.75), 384e9);
  EXPECT_THROW(k2::parse_node("m3"), k2::InputError);
  EXPECT_THROW(k2::parse_node(":512"), k2::InputError);
  EXPECT_THROW(k2::parse_node("m3:512:800:1"), k2::InputError);
  EXPECT_EQ(k2::parse_stage_ranges("0:1,1:4", 4), (std::vector<std::pair<int, int>>{{0, 1}, {1, 4}}));
  EXPECT_THROW(k2::parse_stage_ranges("0:2,3:4", 4), k2::InputError);  // gap
  EXPECT_THROW(k2::parse_stage_ranges("0:2,1:4", 4), k2::InputError);  // overlap
  EXPECT_THROW(k2::parse_stage_ranges("0:2,2:3", 4), k2::InputError);  // short
  EXPECT_THROW(k2::parse_stage_ranges("0:2,2:2,2:4", 4), k2::InputError);  // empty stage
  EXPECT_THROW(k2::parse_stage_ranges("0-2", 4), k2::InputError);
}

TEST(Plan, JsonRoundTrip) {
  const k2::ModelConfig c = kimi();
  const k2::Plan p = k2::make_plan(c, k2::costs_from_config(c, affine(3)),
                                   {k2::parse_node("m2:192GB:800"), k2::parse_node("m3:512GB:819")}, {});
  const auto ranges = k2::ranges_from_plan_json(k2::plan_to_json(p), "plan.json");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], std::make_pair(p.stages[0].first, p.stages[0].last));
  EXPECT_THROW(k2::ranges_from_plan_json(nlohmann::json::array(), "x"), k2::InputError);
}

}  // namespace
