// Multi-head Latent Attention (spec §3): projections, YaRN RoPE on the rope part, the latent cache,
// and the two equivalent formulations — absorbed (decode, one query) and expanded (prefill).
#pragma once

#include "mlx/array.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/rope.h"
#include "model/weights.h"

namespace k2 {

// x [B, L, hidden] (already input-normed) -> [B, L, hidden]. Appends this chunk to `cache`.
mlx::core::array mla_attention(const ModelConfig& c, const Rope& rope, const AttentionWeights& w,
                               const mlx::core::array& x, LayerCache& cache);

}  // namespace k2
