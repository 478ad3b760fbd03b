// Multi-head Latent Attention (spec §3): projections, YaRN RoPE on the rope part, the latent cache,
// and the two equivalent formulations — absorbed (decode, one query) and expanded (prefill).
#pragma once

#include <vector>

#include "mlx/array.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/rope.h"
#include "model/weights.h"

namespace k2 {

// x [B, L, hidden] (already input-normed) -> [B, L, hidden]. Appends this chunk to `cache`.
mlx::core::array mla_attention(const ModelConfig& c, const Rope& rope, const AttentionWeights& w,
                               const mlx::core::array& x, LayerCache& cache);

// Batched decode of B independent sequences: x [B, 1, hidden], row b appended to caches[b] (each its own
// length). The projections run once over all B rows (they read the weights); the scores, softmax and
// context run per row against that row's cache, exactly as a lone decode step computes them.
mlx::core::array mla_attention(const ModelConfig& c, const Rope& rope, const AttentionWeights& w,
                               const mlx::core::array& x, const std::vector<LayerCache*>& caches);

}  // namespace k2
