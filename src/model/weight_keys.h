// The weight key table: every checkpoint tensor kind k2mlx reads, with its module name in each layout (HF
// original, the MLX converter's renames, stacked or per-expert experts), its logical shape in config.json terms,
// and the tensor suffixes of each storage format (MLX affine, FP8 blocks, INT4). The binder (weights.cpp), the
// header-only accounting (footprint.cpp) and the cost model (pipeline/layer_costs.cpp) all read it. Spec §2.1 / §2.2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace k2::keys {

enum class Kind {
  QProj, QAProj, QANorm, QBProj,     // query: q_proj when q_lora_rank == 0, else q_a / norm / q_b
  KvAProj, KvANorm,                  // shared latent + rope key
  KvBProj,                           // HF release and older MLX conversions: W_UK and W_UV stacked per head
  EmbedQ, UnembedOut,                // MLX conversions since Feb 2026: kv_b_proj split per head
  OProj,
  InputNorm, PostAttentionNorm,
  MlpGate, MlpUp, MlpDown,           // dense layers
  Router,                            // mlp.gate (+ its e_score_correction_bias)
  ExpertGate, ExpertUp, ExpertDown,  // routed experts, stacked (switch_mlp) or one module per expert
  SharedGate, SharedUp, SharedDown,  // shared experts
  Embed, FinalNorm, LmHead,
};

// What a kind is part of: selects the tensors of a layer type and separates routed-expert bytes (read in
// part per token) from the rest.
enum class Part { Attention, Norms, DenseMlp, Router, RoutedExperts, SharedExperts, Embedding, Head };

struct KindInfo {
  Kind kind;
  Part part;
  const char* path;         // inside a layer ("self_attn.q_a_proj"), or the full path of a model-level module
  const char* expert_path;  // routed experts only: the per-expert spelling, {} = expert index
  bool per_layer;
  bool vector;              // a 1-D weight (norms): only `path.weight`
};

const std::vector<KindInfo>& table();
const KindInfo& info(Kind k);

// Module path without the config's weight_prefix: "model.layers.3.self_attn.q_a_proj", "lm_head".
std::string module(Kind k, int layer = -1);
// The per-expert spelling of a routed-expert kind: "model.layers.3.mlp.experts.12.up_proj".
std::string expert_module(Kind k, int layer, int expert);

// Logical shape from config.json: [lead, out, in] for matrices (lead = experts or heads, 1 when absent) and
// [1, n, 0] for vectors.
struct Shape {
  int64_t lead = 1, out = 0, in = 0;
};
Shape logical_shape(Kind k, const ModelConfig& c);

// The kinds the binder reads for layer `layer`, with kv_b_proj (not embed_q / unembed_out) for attention.
std::vector<Kind> layer_kinds(const ModelConfig& c, int layer);

// A tensor name taken apart: "model.layers.7.mlp.experts.12.up_proj.weight" -> kind ExpertUp, layer 7,
// module "model.layers.7.mlp.experts.12.up_proj", suffix "weight", label "mlp.experts.*.up_proj".
struct TensorName {
  std::optional<Kind> kind;  // nullopt: not in the table (e.g. DeepSeek-V3's MTP extras)
  std::optional<int> layer;
  std::string module;        // without the weight_prefix
  std::string suffix;        // after the module's last dot: "weight", "scales", "weight_scale_inv", ...
  std::string label;         // the module inside its layer, expert index as '*': a summary row
};
TensorName classify(const std::string& name, const std::string& prefix);

std::string layer(int i);  // "model.layers.3"

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
inline constexpr const char* kPackedShape = ".weight_shape";
inline constexpr const char* kCorrectionBias = ".e_score_correction_bias";

// The layer index of a tensor name ("model.layers.12.mlp..." -> 12), after stripping `prefix`.
std::optional<int> layer_of(const std::string& name, const std::string& prefix = "");

}  // namespace k2::keys
