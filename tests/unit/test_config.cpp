// Unit tests for model/config: the real Kimi-K2-Instruct and DeepSeek-V3 config.json files, the derived
// constants checked against the hand-computed numbers in kimi-k2-spec.md (§1, §3.2, §7.3), kimi_k25
// nesting, quantization entries (§6.3) and the InputErrors for impossible configs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"

#ifndef K2_SHARED_DATA_DIR
#error "K2_SHARED_DATA_DIR must point at shared/data"
#endif

namespace {
namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("test data missing: " + p.string());
  return json::parse(in);
}
json kimi_json() { return read_json(fs::path(K2_SHARED_DATA_DIR) / "kimi-k2-instruct.config.json"); }
json dsv3_json() { return read_json(fs::path(K2_SHARED_DATA_DIR) / "deepseek-v3.config.json"); }

// Expects parse_model_config to throw InputError whose message contains every string in `parts`.
void expect_input_error(const json& j, const std::vector<std::string>& parts) {
  try {
    k2::parse_model_config(j, "cfg.json");
    ADD_FAILURE() << "expected InputError for " << j.dump().substr(0, 200);
  } catch (const k2::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cfg.json"), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

class ConfigFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("k2_unit_cfg_{}_{:08x}{:08x}", info->name(), rd(), rd());
    ASSERT_TRUE(fs::create_directories(dir_));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream out(dir_ / name);
    out << text;
    ASSERT_TRUE(out.good());
  }
  fs::path dir_;
};

// ---- The real configs ----

TEST(Config, KimiK2Instruct) {
  const k2::ModelConfig c = k2::parse_model_config(kimi_json(), "kimi.json");
  EXPECT_EQ(c.model_type, "kimi_k2");
  EXPECT_EQ(c.weight_prefix, "");
  EXPECT_EQ(c.vocab_size, 163840);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_attention_heads, 64);
  EXPECT_EQ(c.n_routed_experts, 384);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.827);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.q_head_dim(), 192);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.first_k_dense_replace, 1);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rope_theta, 50000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 32.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_fast, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->mscale_all_dim, 1.0);
  ASSERT_TRUE(c.bos_token_id.has_value());
  EXPECT_EQ(*c.bos_token_id, 163584);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{163585}));
  // Original release: FP8 with 128x128 blocks, no MLX quantization.
  EXPECT_EQ(c.quantization.quant_method, "fp8");
  EXPECT_EQ(c.quantization.weight_block_size, (std::vector<int>{128, 128}));
  EXPECT_FALSE(c.quantization.global.has_value());
  EXPECT_TRUE(c.quantization.overrides.empty());
}

TEST(Config, KimiK2DerivedConstants) {
  const k2::ModelConfig c = k2::parse_model_config(kimi_json(), "kimi.json");
  // Spec §3.2: 192^-0.5 * (0.1 ln 32 + 1)^2 = 0.130861.
  EXPECT_NEAR(c.softmax_scale(), 0.130861, 1e-6);
  // Spec §1: layer 0 dense, layers 1..60 MoE.
  EXPECT_FALSE(c.is_moe_layer(0));
  int moe = 0;
  for (int l = 1; l < 61; ++l) {
    EXPECT_TRUE(c.is_moe_layer(l)) << "layer " << l;
    moe += c.is_moe_layer(l);
  }
  EXPECT_EQ(moe, 60);
}

TEST(Config, DeepSeekV3) {
  const k2::ModelConfig c = k2::parse_model_config(dsv3_json(), "dsv3.json");
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_EQ(c.q_head_dim(), 192);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->beta_fast, 32.0);
  // Spec §3.2: 192^-0.5 * (0.1 ln 40 + 1)^2 = 0.135234.
  EXPECT_NEAR(c.softmax_scale(), 0.135234, 1e-6);
  // Spec §1: layers 0..2 dense, 3..60 MoE.
  for (int l = 0; l < 3; ++l) EXPECT_FALSE(c.is_moe_layer(l)) << "layer " << l;
  for (int l = 3; l < 61; ++l) EXPECT_TRUE(c.is_moe_layer(l)) << "layer " << l;
  ASSERT_TRUE(c.bos_token_id.has_value());
  EXPECT_EQ(*c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{1}));
  EXPECT_EQ(c.quantization.quant_method, "fp8");
  EXPECT_EQ(c.quantization.weight_block_size, (std::vector<int>{128, 128}));
}

TEST(Config, SoftmaxScaleWithoutYarnIsPlainInverseSqrt) {
  json j = kimi_json();
  j.erase("rope_scaling");
  const auto c = k2::parse_model_config(j, "cfg.json");
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_NEAR(c.softmax_scale(), 0.0721688, 1e-7);  // spec §3.2: 192^-0.5
  // Spec §3.2: factor 64 (K2-0905 / Thinking / K2.5) gives 0.144680.
  j = kimi_json();
  j["rope_scaling"]["factor"] = 64.0;
  EXPECT_NEAR(k2::parse_model_config(j, "cfg.json").softmax_scale(), 0.144680, 1e-6);
}

TEST(Config, MoeLayerFrequency) {
  json j = dsv3_json();
  j["moe_layer_freq"] = 2;
  const auto c = k2::parse_model_config(j, "cfg.json");
  // mlx-lm rule: idx >= first_k_dense_replace and idx % freq == 0.
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_FALSE(c.is_moe_layer(3));
  EXPECT_TRUE(c.is_moe_layer(4));
  EXPECT_FALSE(c.is_moe_layer(5));
  // Without routed experts nothing is MoE.
  json d = kimi_json();
  d.erase("n_routed_experts");
  const auto dense = k2::parse_model_config(d, "cfg.json");
  EXPECT_EQ(dense.n_routed_experts, 0);
  for (int l = 0; l < 61; ++l) EXPECT_FALSE(dense.is_moe_layer(l));
}

// ---- Stop tokens ----

TEST_F(ConfigFolderTest, KimiEosIncludesImEnd) {
  write("config.json", kimi_json().dump());
  const auto c = k2::load_model_config(dir_);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{163585, 163586}));
}

TEST_F(ConfigFolderTest, GenerationConfigEosIsMerged) {
  write("config.json", kimi_json().dump());
  write("generation_config.json", R"({"bos_token_id": 163584, "eos_token_id": [163586, 163585, 7], "temperature": 0.6})");
  EXPECT_EQ(k2::load_model_config(dir_).eos_token_ids, (std::vector<int>{7, 163585, 163586}));
  write("generation_config.json", R"({"eos_token_id": 42})");
  EXPECT_EQ(k2::load_model_config(dir_).eos_token_ids, (std::vector<int>{42, 163585, 163586}));
}

TEST_F(ConfigFolderTest, DeepSeekEosHasNoKimiToken) {
  write("config.json", dsv3_json().dump());
  EXPECT_EQ(k2::load_model_config(dir_).eos_token_ids, (std::vector<int>{1}));
  write("generation_config.json", R"({"eos_token_id": [1, 2]})");
  EXPECT_EQ(k2::load_model_config(dir_).eos_token_ids, (std::vector<int>{1, 2}));
}

TEST_F(ConfigFolderTest, MissingOrBrokenFiles) {
  try {
    k2::load_model_config(dir_);
    ADD_FAILURE() << "expected InputError";
  } catch (const k2::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  write("config.json", "{\"model_type\": ");
  EXPECT_THROW(k2::load_model_config(dir_), k2::InputError);
  write("config.json", kimi_json().dump());
  write("generation_config.json", "{eos");
  try {
    k2::load_model_config(dir_);
    ADD_FAILURE() << "expected InputError";
  } catch (const k2::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("generation_config.json"), std::string::npos) << e.what();
  }
}

// ---- kimi_k25 ----

TEST_F(ConfigFolderTest, KimiK25NestsUnderTextConfig) {
  json inner = kimi_json();
  inner["rope_scaling"]["factor"] = 64.0;
  inner["max_position_embeddings"] = 262144;
  json outer = {{"architectures", {"KimiK25ForConditionalGeneration"}},
                {"model_type", "kimi_k25"},
                {"text_config", inner},
                {"vision_config", {{"hidden_size", 1152}}}};
  write("config.json", outer.dump());
  const auto c = k2::load_model_config(dir_);
  EXPECT_EQ(c.model_type, "kimi_k25");
  EXPECT_EQ(c.weight_prefix, "language_model.");
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.n_routed_experts, 384);
  EXPECT_EQ(c.max_position_embeddings, 262144);
  EXPECT_NEAR(c.softmax_scale(), 0.144680, 1e-6);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{163585, 163586}));

  // Keys of the outer object are not model keys.
  expect_input_error(json{{"model_type", "kimi_k25"}, {"hidden_size", 7168}}, {"text_config"});
  expect_input_error(json{{"model_type", "kimi_k25"}, {"text_config", "x"}}, {"text_config"});
}

// ---- Errors ----

TEST(ConfigErrors, UnknownOrMissingModelType) {
  json j = kimi_json();
  j["model_type"] = "llama";
  expect_input_error(j, {"model_type", "llama"});
  j.erase("model_type");
  expect_input_error(j, {"model_type"});
  expect_input_error(json::array({1, 2}), {});
}

TEST(ConfigErrors, MissingRequiredKey) {
  for (const char* key : {"hidden_size", "vocab_size", "num_hidden_layers", "kv_lora_rank", "qk_rope_head_dim"}) {
    json j = kimi_json();
    j.erase(key);
    expect_input_error(j, {key});
  }
  json j = kimi_json();
  j["hidden_size"] = nullptr;
  expect_input_error(j, {"hidden_size"});
}

TEST(ConfigErrors, WrongTypes) {
  json j = kimi_json();
  j["hidden_size"] = "7168";
  expect_input_error(j, {"hidden_size", "7168"});
  j = kimi_json();
  j["num_attention_heads"] = 64.5;
  expect_input_error(j, {"num_attention_heads"});
  j = kimi_json();
  j["n_routed_experts"] = true;
  expect_input_error(j, {"n_routed_experts"});
  j = kimi_json();
  j["rope_theta"] = "50000";
  expect_input_error(j, {"rope_theta"});
  j = kimi_json();
  j["norm_topk_prob"] = 1;
  expect_input_error(j, {"norm_topk_prob"});
  j = kimi_json();
  j["num_hidden_layers"] = -1;
  expect_input_error(j, {"num_hidden_layers"});
  j = kimi_json();
  j["vocab_size"] = 0;
  expect_input_error(j, {"vocab_size"});
  j = kimi_json();
  j["hidden_size"] = 1e20;  // integral but far beyond int
  expect_input_error(j, {"hidden_size"});
  j = kimi_json();
  j["hidden_size"] = int64_t(1) << 40;
  expect_input_error(j, {"hidden_size"});
  // An integral float is accepted as an integer.
  j = kimi_json();
  j["hidden_size"] = 7168.0;
  EXPECT_EQ(k2::parse_model_config(j, "cfg.json").hidden_size, 7168);
}

TEST(ConfigErrors, AttentionBias) {
  json j = kimi_json();
  j["attention_bias"] = true;
  expect_input_error(j, {"attention_bias"});
}

TEST(ConfigErrors, OddRopeHeadDim) {
  json j = kimi_json();
  j["qk_rope_head_dim"] = 63;
  expect_input_error(j, {"qk_rope_head_dim"});
}

TEST(ConfigErrors, TooManyExpertsPerToken) {
  json j = kimi_json();
  j["num_experts_per_tok"] = 385;
  expect_input_error(j, {"num_experts_per_tok"});
  j["num_experts_per_tok"] = 0;
  expect_input_error(j, {"num_experts_per_tok"});
}

TEST(ConfigErrors, GroupsMustDivideExperts) {
  json j = kimi_json();
  j["n_group"] = 5;  // 384 % 5 != 0
  expect_input_error(j, {"n_group"});
  j = dsv3_json();
  j["n_group"] = 3;  // 256 % 3 != 0
  expect_input_error(j, {"n_group"});
}

TEST(ConfigErrors, TopkGroupExceedsGroups) {
  json j = dsv3_json();
  j["topk_group"] = 9;
  expect_input_error(j, {"topk_group"});
}

TEST(ConfigErrors, UnsupportedRopeScaling) {
  json j = kimi_json();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  expect_input_error(j, {"rope_scaling", "linear"});
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  expect_input_error(j, {"rope_scaling", "dynamic"});
  j["rope_scaling"] = "yarn";
  expect_input_error(j, {"rope_scaling"});
  j["rope_scaling"] = {{"type", "yarn"}};
  expect_input_error(j, {"factor"});
  // HF's newer spelling rope_type is accepted for yarn.
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 32.0}, {"mscale_all_dim", 1.0}};
  EXPECT_NEAR(k2::parse_model_config(j, "cfg.json").softmax_scale(), 0.130861, 1e-6);
}

TEST(ConfigErrors, UnsupportedRouting) {
  json j = kimi_json();
  j["scoring_func"] = "softmax";
  expect_input_error(j, {"scoring_func"});
  j = kimi_json();
  j["topk_method"] = "greedy";
  expect_input_error(j, {"topk_method"});
}

// ---- Quantization ----

TEST(ConfigQuantization, GlobalAndPerModuleOverrides) {
  json j = kimi_json();
  j.erase("quantization_config");
  j["quantization"] = {
      {"group_size", 64},
      {"bits", 4},
      {"model.layers.0.self_attn.kv_b_proj", {{"group_size", 32}, {"bits", 8}}},
      {"model.layers.3.mlp.switch_mlp.down_proj", {{"bits", 3}}},
      {"lm_head", {{"group_size", nullptr}, {"bits", 6}}},
      {"model.embed_tokens", false},
      {"model.layers.1.mlp.gate", true},
      {"model.layers.2.mlp.switch_mlp.gate_proj", {{"group_size", 32}, {"bits", 4}, {"mode", "mxfp4"}}},
  };
  const auto q = k2::parse_model_config(j, "cfg.json").quantization;
  ASSERT_TRUE(q.global.has_value());
  EXPECT_EQ(q.global->bits, 4);
  EXPECT_EQ(q.global->group_size, 64);
  EXPECT_EQ(q.global->mode, "affine");
  EXPECT_EQ(q.quant_method, "");
  ASSERT_EQ(q.overrides.size(), 6u);  // group_size / bits are not module paths

  const auto& kvb = q.overrides.at("model.layers.0.self_attn.kv_b_proj");
  ASSERT_TRUE(kvb.has_value());
  EXPECT_EQ(kvb->bits, 8);
  EXPECT_EQ(kvb->group_size, 32);
  EXPECT_EQ(kvb->mode, "affine");

  const auto& down = q.overrides.at("model.layers.3.mlp.switch_mlp.down_proj");
  ASSERT_TRUE(down.has_value());
  EXPECT_EQ(down->bits, 3);
  EXPECT_EQ(down->group_size, 64);  // inherited from the global entry

  const auto& head = q.overrides.at("lm_head");
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->bits, 6);
  EXPECT_EQ(head->group_size, 64);  // null group_size -> mlx-lm's default 64 (spec §6.3)

  EXPECT_FALSE(q.overrides.at("model.embed_tokens").has_value());  // false = not quantized

  const auto& gate = q.overrides.at("model.layers.1.mlp.gate");
  ASSERT_TRUE(gate.has_value());
  EXPECT_EQ(gate->bits, 4);
  EXPECT_EQ(gate->group_size, 64);

  const auto& mx4 = q.overrides.at("model.layers.2.mlp.switch_mlp.gate_proj");
  ASSERT_TRUE(mx4.has_value());
  EXPECT_EQ(mx4->mode, "mxfp4");
  EXPECT_EQ(mx4->group_size, 32);
}

TEST(ConfigQuantization, NullGroupSizeInOverrideIsSixtyFourEvenWithOtherGlobal) {
  json j = kimi_json();
  j["quantization"] = {{"group_size", 32}, {"bits", 3}, {"mode", "affine"}, {"lm_head", {{"group_size", nullptr}, {"bits", 8}}}};
  const auto q = k2::parse_model_config(j, "cfg.json").quantization;
  ASSERT_TRUE(q.global.has_value());
  EXPECT_EQ(*q.global, (k2::QuantSpec{3, 32, "affine"}));
  ASSERT_EQ(q.overrides.size(), 1u);
  EXPECT_EQ(q.overrides.at("lm_head"), (k2::QuantSpec{8, 64, "affine"}));
}

TEST(ConfigQuantization, MalformedOverrideNamesTheModule) {
  json j = kimi_json();
  j["quantization"] = {{"group_size", 64}, {"bits", 4}, {"model.layers.5.self_attn.o_proj", "eight"}};
  expect_input_error(j, {"model.layers.5.self_attn.o_proj"});
  j["quantization"] = {{"group_size", 64}, {"bits", 4}, {"model.layers.5.self_attn.o_proj", {{"bits", "8"}}}};
  expect_input_error(j, {"model.layers.5.self_attn.o_proj"});
  j["quantization"] = {{"group_size", "64"}, {"bits", 4}};
  expect_input_error(j, {"quantization"});
}

TEST(ConfigQuantization, Fp8QuantizationConfig) {
  json j = dsv3_json();
  j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"weight_block_size", {64, 32}}};
  const auto q = k2::parse_model_config(j, "cfg.json").quantization;
  EXPECT_EQ(q.quant_method, "fp8");
  EXPECT_EQ(q.weight_block_size, (std::vector<int>{64, 32}));
  EXPECT_FALSE(q.global.has_value());

  j.erase("quantization_config");
  const auto none = k2::parse_model_config(j, "cfg.json").quantization;
  EXPECT_EQ(none.quant_method, "");
  EXPECT_TRUE(none.weight_block_size.empty());
  EXPECT_FALSE(none.global.has_value());
}

}  // namespace
