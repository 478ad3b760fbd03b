// The model's weights for a layer range, bound from a checkpoint: structures with a shape comment
// per member, and the loader that maps every checkpoint layout (HF bf16/fp16/fp32, original FP8,
// compressed-tensors INT4, MLX affine with stacked or per-expert experts and either kv_b_proj or
// embed_q/unembed_out) onto them, checking every shape against config.json.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"
#include "model/linear.h"

namespace k2 {

struct AttentionWeights {
  std::optional<Linear> q_proj;            // [heads·q_head_dim, hidden] when q_lora_rank == 0
  std::optional<Linear> q_a_proj;          // [q_lora_rank, hidden]
  std::optional<mlx::core::array> q_a_layernorm;  // [q_lora_rank]
  std::optional<Linear> q_b_proj;          // [heads·q_head_dim, q_lora_rank]
  Linear kv_a_proj_with_mqa;               // [kv_lora_rank + qk_rope_head_dim, hidden]
  mlx::core::array kv_a_layernorm;         // [kv_lora_rank]
  // W_UK per head in the orientation the checkpoint stores, so that quantized rows are used as they are
  // (never re-quantized): [heads, kv_lora_rank, qk_nope_head_dim] (W_UKᵀ, an MLX embed_q) or, when
  // embed_q_is_kv_b_rows, [heads, qk_nope_head_dim, kv_lora_rank] (W_UK, the key rows of kv_b_proj).
  MultiLinear embed_q;
  bool embed_q_is_kv_b_rows = false;
  MultiLinear unembed_out;                 // [heads, v_head_dim, kv_lora_rank]       (W_UV per head)
  Linear o_proj;                           // [hidden, heads·v_head_dim]
  // Prefill attention on CPU streams runs on k2mlx's blocked kernel with these threads (null: MLX's SDPA).
  std::shared_ptr<kernels::CpuKernels> cpu_kernels;
};

struct MlpWeights {
  Linear gate_proj;  // [intermediate, hidden]
  Linear up_proj;    // [intermediate, hidden]
  Linear down_proj;  // [hidden, intermediate]
};

struct MoeWeights {
  mlx::core::array gate_weight;              // [n_routed_experts, hidden] router, never quantized
  mlx::core::array e_score_correction_bias;  // [n_routed_experts] float32, selection only
  SwitchLinear gate_proj;                    // [experts, moe_intermediate, hidden]
  SwitchLinear up_proj;                      // [experts, moe_intermediate, hidden]
  SwitchLinear down_proj;                    // [experts, hidden, moe_intermediate]
  std::optional<MlpWeights> shared_experts;  // width moe_intermediate·n_shared_experts
};

struct LayerWeights {
  int index = 0;
  mlx::core::array input_layernorm;           // [hidden]
  mlx::core::array post_attention_layernorm;  // [hidden]
  AttentionWeights attn;
  std::optional<MlpWeights> mlp;  // dense layers
  std::optional<MoeWeights> moe;  // MoE layers
};

struct ModelWeights {
  int first_layer = 0, last_layer = 0;
  mlx::core::Dtype dtype = mlx::core::float32;  // compute dtype the weights were prepared for
  std::optional<Embedding> embed_tokens;  // [vocab, hidden]; first stage only
  std::vector<LayerWeights> layers;       // layers [first_layer, last_layer)
  std::optional<mlx::core::array> norm;   // [hidden]; last stage only
  std::optional<Linear> lm_head;          // [vocab, hidden]; last stage only
  size_t nbytes() const;
};

struct LoadOptions {
  int first_layer = 0;
  int last_layer = -1;  // -1: num_hidden_layers
  bool load_embedding = true;
  bool load_head = true;
  // Compute dtype: float weights (incl. quantization scales/biases) are cast to it. The router's
  // e_score_correction_bias always stays float32 (spec §9.7).
  mlx::core::Dtype dtype = mlx::core::float32;
  // FP8 sources: dequantize to `dtype`, or re-quantize every FP8 matrix to this MLX affine format.
  std::optional<QuantSpec> fp8_requantize;
  // Quantized matmuls on CPU streams run on these kernels (null: MLX's own quantized kernels).
  std::shared_ptr<kernels::CpuKernels> cpu_kernels;
  // Reader threads that read tensors ahead of binding (io/tensor_prefetch.h); 0: default_read_threads();
  // 1: none, each tensor is read on the calling thread when it is bound. The weights are the same either way.
  int read_threads = 0;
  // Bytes the readers may hold ahead of binding (one tensor may be larger).
  uint64_t read_ahead_bytes = 1ull << 30;
  // Called with (bytes done, bytes total) while loading.
  std::function<void(size_t, size_t)> progress;
  // Called once with a summary when tensors disagree with config.json's declared quantization.
  std::function<void(const std::string&)> warn;
};

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& config, const LoadOptions& options);

}  // namespace k2
