// The memory model of running a layer range: the latent KV cache (with its growth step), the transient
// buffers of one prefill chunk as the attention path in use allocates them, and the logits. One estimate for
// `inspect`, `plan`, chunk sizing and the check before a prefill; `logits --stats` prints it beside the
// measured peak. Weights are counted elsewhere (footprint.h: bound_weight_bytes).
#pragma once

#include <cstddef>

#include "model/config.h"

namespace k2 {

// How activations are computed, which decides what a prefill chunk allocates.
struct ActivationSpec {
  size_t bytes = 4;  // bytes per activation and KV-cache element (float32 4, bfloat16 / float16 2)
  // k2mlx's blocked causal attention (CPU stream, float32, k2 kernels on): keys and values expanded per head
  // over the whole context, no [chunk, context] buffers. Otherwise MLX's SDPA with the rope scores as an
  // additive mask: [heads, chunk, context] scores, mask and probabilities.
  bool blocked_attention = true;
};

struct RuntimeMemory {
  size_t kv_cache = 0;   // latent cache at `context` positions, rounded up to the 256-position growth step
  // One layer's previous cache, alive while it is copied into the grown one; 0 when the prefill reserved the
  // cache for the whole prompt (Session and LocalStep do: LayerCache::reserve).
  size_t kv_growth = 0;
  size_t workspace = 0;  // largest transient buffers of one chunk in one layer, plus the logits
  size_t total() const { return kv_cache + kv_growth + workspace; }
};

// Buffers of a chunk, from attention.cpp / moe.cpp: the residual stream; then the larger of the attention (its
// projections and the keys / values expanded per head over the context, plus [heads, chunk, context] scores,
// mask and probabilities on the SDPA path) and of the expanded keys / values together with the feed-forward
// buffers: MLX evaluates a chunk asynchronously, so the feed-forward's outputs are allocated while the attention
// task that holds the expanded keys / values still runs.
// `layers` layers running the last chunk of `chunk` tokens that brings the context to `context` positions;
// `logit_rows` rows of float32 logits are held at the end when the range has the lm_head (1: the last position,
// `context` for every position).
RuntimeMemory estimate_runtime_memory(const ModelConfig& config, int layers, int context, int chunk,
                                      const ActivationSpec& activations, bool has_head, int logit_rows = 1,
                                      bool reserved_cache = false);

}  // namespace k2
