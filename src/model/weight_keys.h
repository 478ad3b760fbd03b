// The weight key table: every tensor name k2mlx reads, in one place (HF original names, the MLX
// converter's renames, the FP8 and INT4 suffixes). Spec §2.1 / §2.2.
#pragma once

#include <optional>
#include <string>

#include <fmt/format.h>

namespace k2::keys {

inline std::string layer(int i) { return fmt::format("model.layers.{}", i); }
inline std::string attn(int i) { return layer(i) + ".self_attn"; }
inline std::string mlp(int i) { return layer(i) + ".mlp"; }
inline std::string switch_mlp(int i, const char* proj) { return fmt::format("{}.switch_mlp.{}", mlp(i), proj); }
inline std::string expert(int i, int e, const char* proj) { return fmt::format("{}.experts.{}.{}", mlp(i), e, proj); }

inline constexpr const char* kEmbed = "model.embed_tokens";
inline constexpr const char* kNorm = "model.norm";
inline constexpr const char* kLmHead = "lm_head";

// Tensor suffixes of one module.
inline constexpr const char* kWeight = ".weight";
inline constexpr const char* kScales = ".scales";               // MLX quantized
inline constexpr const char* kBiases = ".biases";               // MLX affine
inline constexpr const char* kScaleInv = ".weight_scale_inv";  // original FP8 release, 128x128 blocks
inline constexpr const char* kPacked = ".weight_packed";        // compressed-tensors INT4 (K2-Thinking)
inline constexpr const char* kPackedScale = ".weight_scale";
inline constexpr const char* kCorrectionBias = ".e_score_correction_bias";

// The layer index of a tensor name ("model.layers.12.mlp..." -> 12), after stripping `prefix`.
inline std::optional<int> layer_of(const std::string& name, const std::string& prefix = "") {
  const std::string head = prefix + "model.layers.";
  if (name.compare(0, head.size(), head) != 0) return std::nullopt;
  size_t pos = head.size();
  int value = 0;
  bool any = false;
  while (pos < name.size() && name[pos] >= '0' && name[pos] <= '9') {
    value = value * 10 + (name[pos] - '0');
    if (value > 1'000'000) return std::nullopt;
    ++pos;
    any = true;
  }
  if (!any || pos >= name.size() || name[pos] != '.') return std::nullopt;
  return value;
}

}  // namespace k2::keys
