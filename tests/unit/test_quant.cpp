// Per-tensor quantization inference (spec §6.4): bits and group size from shapes, the 3-bit tensor
// under a 4-bit config, and a clear error for shapes that fit no format.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/quant.h"

namespace {

k2::PackedShapes shapes(int64_t in, int64_t packed, int64_t scale_cols, bool biases = true) {
  return k2::PackedShapes{"model.layers.1.mlp.switch_mlp.gate_proj", in, 2048, packed, scale_cols, biases,
                          "[384, 2048, " + std::to_string(packed) + "]",
                          "[384, 2048, " + std::to_string(scale_cols) + "]"};
}

}  // namespace

TEST(QuantInference, KimiShapesFromTheSpecTable) {
  // 7168 inputs: 4-bit -> 896 packed, 3-bit -> 672; group 64 -> 112 scale columns.
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 896, 112), std::nullopt), (k2::QuantSpec{4, 64, "affine"}));
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 672, 112), std::nullopt), (k2::QuantSpec{3, 64, "affine"}));
  EXPECT_EQ(k2::infer_quant_spec(shapes(2048, 192, 32), std::nullopt), (k2::QuantSpec{3, 64, "affine"}));
  EXPECT_EQ(k2::infer_quant_spec(shapes(512, 48, 8), std::nullopt), (k2::QuantSpec{3, 64, "affine"}));
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 1344, 224), std::nullopt), (k2::QuantSpec{6, 32, "affine"}));
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 448, 56), std::nullopt), (k2::QuantSpec{2, 128, "affine"}));
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 1120, 112), std::nullopt), (k2::QuantSpec{5, 64, "affine"}));
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 1792, 112), std::nullopt), (k2::QuantSpec{8, 64, "affine"}));
}

TEST(QuantInference, ThreeBitTensorUnderFourBitConfigLoadsAsThreeBit) {
  const k2::QuantSpec declared{4, 64, "affine"};
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 672, 112), declared).bits, 3);
}

TEST(QuantInference, ImpossibleShapesNameTensorShapesAndImplications) {
  try {
    k2::infer_quant_spec(shapes(7168, 700, 112), k2::QuantSpec{4, 64, "affine"});
    FAIL() << "expected CheckpointError";
  } catch (const k2::CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.layers.1.mlp.switch_mlp.gate_proj"), std::string::npos) << m;
    EXPECT_NE(m.find("[384, 2048, 700]"), std::string::npos) << m;
    EXPECT_NE(m.find("[2048, 7168]"), std::string::npos) << m;
    EXPECT_NE(m.find("4-bit group 64"), std::string::npos) << m;  // what config.json implies
    EXPECT_NE(m.find("896"), std::string::npos) << m;             // packed width the config would need
  }
  EXPECT_THROW(k2::infer_quant_spec(shapes(7168, 1568, 112), std::nullopt), k2::CheckpointError);  // 7 bits
  EXPECT_THROW(k2::infer_quant_spec(shapes(7168, 896, 14), std::nullopt), k2::CheckpointError);    // group 512
  EXPECT_THROW(k2::infer_quant_spec(shapes(7168, 896, 0), std::nullopt), k2::CheckpointError);
}

TEST(QuantInference, FloatingPointModesWithoutBiases) {
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 896, 224, false), std::nullopt).mode, "mxfp4");
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 896, 448, false), std::nullopt).mode, "nvfp4");
  EXPECT_EQ(k2::infer_quant_spec(shapes(7168, 1792, 224, false), std::nullopt).mode, "mxfp8");
  EXPECT_THROW(k2::infer_quant_spec(shapes(7168, 672, 112, false), std::nullopt), k2::CheckpointError);
}

TEST(QuantInference, DeclaredOverridesWinOverGlobal) {
  k2::DeclaredQuantization dq;
  dq.global = k2::QuantSpec{4, 64, "affine"};
  dq.overrides["lm_head"] = k2::QuantSpec{6, 64, "affine"};
  dq.overrides["model.embed_tokens"] = std::nullopt;
  EXPECT_EQ(k2::declared_quant_for(dq, "lm_head")->bits, 6);
  EXPECT_EQ(k2::declared_quant_for(dq, "model.layers.0.self_attn.q_a_proj")->bits, 4);
  EXPECT_FALSE(k2::declared_quant_for(dq, "model.embed_tokens").has_value());
}
