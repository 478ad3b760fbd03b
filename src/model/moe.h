// Feed-forward blocks: the dense SwiGLU MLP, and the DeepSeek-V3 MoE (spec §5): sigmoid router in
// float32, e_score_correction_bias for selection only, group-limited top-k, normalised and scaled
// weights, stacked-expert SwiGLU via gather_(q)mm, plus the shared expert.
#pragma once

#include <utility>

#include "mlx/array.h"
#include "model/config.h"
#include "model/weights.h"

namespace k2 {

// silu(gate) ⊙ up, the SwiGLU activation, as one fused kernel.
mlx::core::array silu_mul(const mlx::core::array& gate, const mlx::core::array& up);
mlx::core::array swiglu_mlp(const MlpWeights& w, const mlx::core::array& x);

// Router decision for x [..., hidden]: (expert indices [..., k] uint32, weights [..., k] float32).
std::pair<mlx::core::array, mlx::core::array> route(const ModelConfig& c, const mlx::core::array& router_weight,
                                                    const mlx::core::array& correction_bias,
                                                    const mlx::core::array& x);

// The selection step alone, on router logits [..., experts] (exposed for unit tests).
std::pair<mlx::core::array, mlx::core::array> select_experts(const ModelConfig& c, const mlx::core::array& logits,
                                                             const mlx::core::array& correction_bias);

mlx::core::array moe_forward(const ModelConfig& c, const MoeWeights& w, const mlx::core::array& x);

}  // namespace k2
