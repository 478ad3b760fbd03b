// ModelConfig: every config.json value the forward pass uses (names kept from config.json), the
// constants derived from them, the quantization declared by the checkpoint, and the stop tokens.
// Parsing only; no tensors.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace k2 {

// One affine/fp quantization setting as mlx-lm records it ({"group_size", "bits", "mode"}).
struct QuantSpec {
  int bits = 4;
  int group_size = 64;
  std::string mode = "affine";
  bool operator==(const QuantSpec&) const = default;
};

// What config.json says about quantization. MLX files: a global spec plus per-module overrides
// keyed by module path (nullopt value = "not quantized"). Original releases: a quant_method.
struct DeclaredQuantization {
  std::optional<QuantSpec> global;
  std::map<std::string, std::optional<QuantSpec>> overrides;
  std::string quant_method;  // "", "fp8", "compressed-tensors", ...
  std::vector<int> weight_block_size;  // fp8: [128, 128]
};

struct YarnScaling {
  double factor = 1.0;
  int original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  std::string model_type;  // as written: kimi_k2, deepseek_v3, kimi_k25 (text_config read)
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int moe_intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int n_routed_experts = 0;  // 0 = no MoE layers
  int n_shared_experts = 0;
  int num_experts_per_tok = 0;
  double routed_scaling_factor = 1.0;
  int kv_lora_rank = 0;
  int q_lora_rank = 0;  // 0 = no low-rank query (plain q_proj)
  int qk_rope_head_dim = 0;
  int qk_nope_head_dim = 0;
  int v_head_dim = 0;
  std::string topk_method = "noaux_tc";
  std::string scoring_func = "sigmoid";
  bool norm_topk_prob = true;
  int n_group = 1;
  int topk_group = 1;
  int moe_layer_freq = 1;
  int first_k_dense_replace = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<YarnScaling> rope_scaling;
  bool tie_word_embeddings = false;
  int num_nextn_predict_layers = 0;
  std::string weight_prefix;  // "" or "language_model." (kimi_k25 wraps the text model)

  DeclaredQuantization quantization;
  std::vector<int> eos_token_ids;  // config + generation_config.json (+ Kimi's <|im_end|>)
  std::optional<int> bos_token_id;

  // Derived.
  int q_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // mlx-lm / HF: dispatch MoE iff experts exist, idx >= first_k_dense_replace and idx % freq == 0.
  bool is_moe_layer(int layer) const;
  // d_qk^-0.5 times yarn mscale(factor, mscale_all_dim)^2 (spec §3.2).
  double softmax_scale() const;
};

// Parses a config.json object. `source` names the file in errors. Throws InputError on unknown
// model_type, missing keys or impossible values.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);

// Reads <dir>/config.json and, when present, <dir>/generation_config.json (stop tokens).
ModelConfig load_model_config(const std::filesystem::path& dir);

}  // namespace k2
