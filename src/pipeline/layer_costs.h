// What each layer of a model costs a pipeline stage: resident weight bytes and the bytes one decoded
// token reads, either measured from a checkpoint's safetensors headers or computed from config.json
// dimensions plus a quantization recipe (spec §2.2 / §8). No tensors are read; no placement decisions.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"

namespace k2 {

struct LayerCost {
  double weight_bytes = 0;  // resident
  double read_bytes = 0;    // read per decoded token at batch 1 (attention + active experts)
};

struct ModelCosts {
  std::vector<LayerCost> layers;  // one per layer index < num_hidden_layers
  double embed_bytes = 0;         // whole embedding table (resident on the first stage)
  double embed_read_bytes = 0;    // one row per token
  double head_bytes = 0;          // final norm + lm_head (resident on the last stage, read fully per token)
  std::string source;             // "checkpoint DIR" or "config.json + 4-bit group 64 ..."

  double total_weight_bytes() const;
  // Resident bytes of layers [first, last) plus the embedding / head when asked.
  double range_bytes(int first, int last, bool embed, bool head) const;
  double range_read_bytes(int first, int last, bool embed, bool head) const;
};

// A quantization recipe for config-only planning: the global format (nullopt = unquantized at
// `float_bytes` per weight) and per-module overrides (nullopt value = unquantized). Override keys are
// MLX module paths ("lm_head", "model.layers.3.mlp.switch_mlp.down_proj"); a key without '*' matches
// a path equal to it or ending in "." + key; '*' matches any run of characters.
struct QuantRecipe {
  std::optional<QuantSpec> global;
  std::vector<std::pair<std::string, std::optional<QuantSpec>>> overrides;  // first match wins
  int float_bytes = 2;  // bf16 for unquantized weights, norms and the router

  std::optional<QuantSpec> for_module(const std::string& path) const;
  std::string describe() const;
};

// Parses "BITS[:GROUP[:MODE]]" ("4", "3:64", "4:32:affine"), "fp8" (e4m3 + 128x128 float32 block
// scales, the original release) or "none"/"bf16" (unquantized).
std::optional<QuantSpec> parse_quant(const std::string& text);
// Parses "PATH=BITS[:GROUP]" or "PATH=none" into an override.
std::pair<std::string, std::optional<QuantSpec>> parse_quant_override(const std::string& text);
// The recipe a config.json declares (mlx-lm "quantization" dict), if any.
std::optional<QuantRecipe> declared_recipe(const ModelConfig& config);

// Bytes of a weight [count·out, in] stored in `q` (affine: packed uint32 + bf16 scales and biases;
// mxfp4/mxfp8/nvfp4: packed + one-byte scales, no biases), or unquantized at `float_bytes`.
double matrix_bytes(double count, double out, double in, const std::optional<QuantSpec>& q, int float_bytes);

ModelCosts costs_from_config(const ModelConfig& config, const QuantRecipe& recipe);
ModelCosts costs_from_checkpoint(const Checkpoint& ckpt, const ModelConfig& config);

}  // namespace k2
