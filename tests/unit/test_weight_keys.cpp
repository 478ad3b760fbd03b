// Unit tests for model/weight_keys: every kind's module path classifies back to that kind (stacked and
// per-expert spellings), the kinds a Kimi-K2 layer reads, and logical shapes from the real config.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/weight_keys.h"

#ifndef K2_SHARED_DATA_DIR
#error "K2_SHARED_DATA_DIR must point at shared/data"
#endif

namespace {
namespace fs = std::filesystem;
namespace keys = k2::keys;
using keys::Kind;

k2::ModelConfig kimi() {
  std::ifstream in(fs::path(K2_SHARED_DATA_DIR) / "kimi-k2-instruct.config.json");
  if (!in) throw std::runtime_error("test data missing: kimi-k2-instruct.config.json");
  return k2::parse_model_config(nlohmann::json::parse(in), "kimi-k2-instruct.config.json");
}

TEST(WeightKeys, EveryKindClassifiesBack) {
  for (const auto& row : keys::table()) {
    const std::string module = keys::module(row.kind, 7);
    for (const std::string prefix : {"", "language_model."}) {
      const keys::TensorName t = keys::classify(prefix + module + ".scales", prefix);
      ASSERT_TRUE(t.kind.has_value()) << module;
      EXPECT_EQ(*t.kind, row.kind) << module;
      EXPECT_EQ(t.module, module);
      EXPECT_EQ(t.suffix, "scales");
      EXPECT_EQ(t.layer, row.per_layer ? std::optional<int>(7) : std::nullopt) << module;
    }
    if (row.expert_path) {
      const keys::TensorName e = keys::classify(keys::expert_module(row.kind, 3, 117) + ".weight_scale_inv", "");
      ASSERT_TRUE(e.kind.has_value());
      EXPECT_EQ(*e.kind, row.kind);
      EXPECT_EQ(e.suffix, "weight_scale_inv");
      EXPECT_EQ(e.layer, 3);
      EXPECT_EQ(e.label.find("mlp.experts.*."), 0u) << e.label;
    }
  }
}

TEST(WeightKeys, NamesOutsideTheTable) {
  const keys::TensorName mtp = keys::classify("model.layers.61.enorm.weight", "");
  EXPECT_FALSE(mtp.kind.has_value());
  EXPECT_EQ(mtp.layer, 61);
  EXPECT_EQ(mtp.label, "enorm");
  EXPECT_EQ(keys::classify("model.layers.2.mlp.experts.5.up_proj.weight", "").label, "mlp.experts.*.up_proj");
  EXPECT_EQ(keys::classify("model.embed_tokens.weight", "").kind, Kind::Embed);
  EXPECT_EQ(keys::classify("lm_head.biases", "").kind, Kind::LmHead);
  // A layer-level name without a layer index is not that kind.
  EXPECT_FALSE(keys::classify("self_attn.o_proj.weight", "").kind.has_value());
  EXPECT_EQ(keys::module(Kind::ExpertDown, 4), "model.layers.4.mlp.switch_mlp.down_proj");
  EXPECT_EQ(keys::expert_module(Kind::ExpertDown, 4, 12), "model.layers.4.mlp.experts.12.down_proj");
}

TEST(WeightKeys, KimiLayersAndShapes) {
  const k2::ModelConfig c = kimi();
  const auto dense = keys::layer_kinds(c, 0), moe = keys::layer_kinds(c, 1);
  auto has = [](const std::vector<Kind>& v, Kind k) { return std::find(v.begin(), v.end(), k) != v.end(); };
  EXPECT_TRUE(has(dense, Kind::MlpDown) && !has(dense, Kind::Router));
  EXPECT_TRUE(has(moe, Kind::Router) && has(moe, Kind::ExpertUp) && has(moe, Kind::SharedDown) && !has(moe, Kind::MlpUp));
  EXPECT_TRUE(has(moe, Kind::QAProj) && !has(moe, Kind::QProj) && has(moe, Kind::KvBProj) && !has(moe, Kind::EmbedQ));
  EXPECT_EQ(dense.size(), 12u);
  EXPECT_EQ(moe.size(), 16u);
  // Kimi-K2: 64 heads, nope 128 + rope 64, v 128, kv_lora 512, q_lora 1536, 384 experts of width 2048.
  auto shape = [&](Kind k) { const auto s = keys::logical_shape(k, c); return std::vector<int64_t>{s.lead, s.out, s.in}; };
  EXPECT_EQ(shape(Kind::KvBProj), (std::vector<int64_t>{1, 64 * 256, 512}));
  EXPECT_EQ(shape(Kind::EmbedQ), (std::vector<int64_t>{64, 512, 128}));
  EXPECT_EQ(shape(Kind::UnembedOut), (std::vector<int64_t>{64, 128, 512}));
  EXPECT_EQ(shape(Kind::QBProj), (std::vector<int64_t>{1, 64 * 192, 1536}));
  EXPECT_EQ(shape(Kind::ExpertDown), (std::vector<int64_t>{384, 7168, 2048}));
  EXPECT_EQ(shape(Kind::KvANorm), (std::vector<int64_t>{1, 512, 0}));
}

}  // namespace
