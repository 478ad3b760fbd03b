// Buffer by buffer, what mla_attention / moe_forward / the cache allocate for one chunk (B = 1), so that the
// estimate follows the code: see attention.cpp (both attention paths), moe.cpp and kv_cache.cpp.
#include "model/runtime_memory.h"

#include <algorithm>

#include "model/kv_cache.h"

namespace k2 {

namespace {

size_t round_up_to_step(size_t positions) {
  const size_t step = LayerCache::kStep;
  return (positions + step - 1) / step * step;
}

// Keys and values expanded per head from the latents of every cached position.
size_t expanded_kv_elements(const ModelConfig& c, size_t S) {
  return static_cast<size_t>(c.num_attention_heads) * S * (c.qk_nope_head_dim + c.v_head_dim);
}

// Attention of one layer for L queries over S positions, in elements.
size_t attention_elements(const ModelConfig& c, size_t L, size_t S, bool blocked) {
  const size_t H = c.num_attention_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim, dv = c.v_head_dim;
  const size_t r = c.kv_lora_rank, qa = c.q_lora_rank > 0 ? c.q_lora_rank : 0;
  // Per query: q_a and its norm, q [H·(dn + dr)], the rotated q_pe, the contiguous q_nope, kv_a's output and the
  // normalised latent / rotated k_pe, the attention output and its [L, H·dv] transpose.
  const size_t per_query = 2 * qa + H * (dn + dr) + H * dr + H * dn + 2 * (r + dr) + 2 * H * dv;
  size_t n = L * per_query + expanded_kv_elements(c, S);
  // SDPA path: rope scores [H, L, S] masked by `where` (a second [H, L, S]), then SDPA's own scores and
  // probabilities on the CPU fallback; three are alive at once.
  if (!blocked) n += 3 * H * L * S;
  return n;
}

// The feed-forward part of one layer for L tokens, in elements: the wider of the dense MLP and the MoE.
size_t mlp_elements(const ModelConfig& c, size_t L) {
  const size_t D = c.hidden_size;
  size_t dense = L * (3 * static_cast<size_t>(c.intermediate_size) + D);  // gate, up, their product, down
  if (c.n_routed_experts == 0) return dense;
  const size_t k = std::max(c.num_experts_per_tok, 1), I = c.moe_intermediate_size;
  const size_t shared = static_cast<size_t>(std::max(c.n_shared_experts, 0)) * I;
  // Router logits and scores [L, E] (float32, counted as elements of 4 bytes below), the gathered inputs
  // [L·k, D], gate / up / product [L·k, I], the experts' outputs and their un-permuted copy [L·k, D], the
  // weighted sum, the shared expert.
  const size_t moe = L * (3 * static_cast<size_t>(c.n_routed_experts) + k * (3 * D + 3 * I) + D + 3 * shared + D);
  return std::max(dense, moe);
}

}  // namespace

RuntimeMemory estimate_runtime_memory(const ModelConfig& c, int layers, int context, int chunk,
                                      const ActivationSpec& a, bool has_head, int logit_rows, bool reserved) {
  RuntimeMemory m;
  const size_t S = static_cast<size_t>(std::max(context, 1));
  const size_t L = static_cast<size_t>(std::clamp(chunk, 1, static_cast<int>(S)));
  m.kv_cache = round_up_to_step(S) * kv_bytes_per_token(c, layers, a.bytes);
  if (layers > 0 && L > 1 && !reserved) m.kv_growth = round_up_to_step(S - L) * kv_bytes_per_token(c, 1, a.bytes);
  if (layers == 0 && !has_head) return m;
  const size_t D = c.hidden_size;
  size_t ws = 0;
  if (layers > 0) {
    // The residual stream and the layer's normalised input stay alive through either half of the layer.
    const size_t live = 2 * L * D;
    // Measured (logits --stats on a 3-layer toy, 2K to 40K tokens): the attention's output [H, L, v] and its
    // [L, H·v] transpose are still alive too when the feed-forward's buffers are allocated.
    const size_t attn_out = 2 * L * static_cast<size_t>(c.num_attention_heads) * c.v_head_dim;
    ws = (live + std::max(attention_elements(c, L, S, a.blocked_attention),
                          expanded_kv_elements(c, S) + attn_out + mlp_elements(c, L))) *
         a.bytes;
  }
  if (has_head) ws += static_cast<size_t>(std::max(logit_rows, 1)) * static_cast<size_t>(c.vocab_size) * 4;
  m.workspace = ws;
  return m;
}

}  // namespace k2
