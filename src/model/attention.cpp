// MLA forward pass, following spec §3.2-3.4 (and mlx-lm deepseek_v3.py's arrangement, so that its
// numbers are reproduced): the rope part of the scores is computed separately and passed to SDPA
// as an additive mask, which keeps the fused kernels usable on Metal.
#include "model/attention.h"

#include <limits>

#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

// Additive causal mask applied to the rope scores: query i (absolute offset+i) sees keys <= offset+i.
mx::array causal_where(const mx::array& scores, int offset) {
  const int L = scores.shape(-2), S = scores.shape(-1);
  mx::array q_pos = mx::reshape(mx::arange(offset, offset + L, mx::int32), {L, 1});
  mx::array k_pos = mx::reshape(mx::arange(0, S, mx::int32), {1, S});
  mx::array visible = mx::greater_equal(q_pos, k_pos);  // [L, S]
  const float lowest = scores.dtype() == mx::float32 ? std::numeric_limits<float>::lowest()
                                                    : -3.3895313892515355e38f;  // bf16/fp16 finfo.min
  mx::array floor_value = scores.dtype() == mx::float16 ? mx::array(-65504.0f, mx::float16)
                                                        : mx::array(lowest, scores.dtype());
  return mx::where(visible, scores, floor_value);
}

}  // namespace

mx::array mla_attention(const ModelConfig& c, const Rope& rope, const AttentionWeights& w, const mx::array& x,
                        LayerCache& cache) {
  const int B = x.shape(0), L = x.shape(1);
  const int H = c.num_attention_heads, nope = c.qk_nope_head_dim, rope_dim = c.qk_rope_head_dim;
  const int r = c.kv_lora_rank;
  const float scale = static_cast<float>(c.softmax_scale());
  const int offset = cache.offset();

  mx::array q = w.q_proj ? (*w.q_proj)(x)
                         : (*w.q_b_proj)(mx::fast::rms_norm((*w.q_a_proj)(x), *w.q_a_layernorm, 1e-6f));
  q = mx::transpose(mx::reshape(q, {B, L, H, c.q_head_dim()}), {0, 2, 1, 3});  // [B, H, L, 192]
  mx::array q_nope = mx::slice(q, {0, 0, 0, 0}, {B, H, L, nope});               // [B, H, L, 128]
  mx::array q_pe = mx::slice(q, {0, 0, 0, nope}, {B, H, L, nope + rope_dim});    // [B, H, L, 64]

  mx::array kv = w.kv_a_proj_with_mqa(x);                                         // [B, L, r + 64]
  mx::array latent = mx::slice(kv, {0, 0, 0}, {B, L, r});                          // [B, L, r]
  mx::array k_pe = mx::slice(kv, {0, 0, r}, {B, L, r + rope_dim});                 // [B, L, 64]
  k_pe = mx::transpose(mx::reshape(k_pe, {B, L, 1, rope_dim}), {0, 2, 1, 3});      // [B, 1, L, 64]
  // Only the latent part is normalised; the 64-dim rope key is shared by all heads (MQA).
  latent = mx::expand_dims(mx::fast::rms_norm(latent, w.kv_a_layernorm, 1e-6f), 1);  // [B, 1, L, r]

  q_pe = rope.apply(q_pe, offset);
  k_pe = rope.apply(k_pe, offset);
  auto [latent_all, k_pe_all] = cache.update_and_fetch(latent, k_pe);  // [B, 1, S, r], [B, 1, S, 64]

  mx::array pe_scores = mx::matmul(mx::multiply(q_pe, mx::array(scale, q_pe.dtype())),
                                   mx::swapaxes(k_pe_all, -1, -2));  // [B, H, L, S]
  if (L > 1) pe_scores = causal_where(pe_scores, offset);

  mx::array out = mx::array(0.0f);
  if (L == 1) {
    // Absorbed: q_lat = W_UKᵀ q_nope; attend over the latents as one shared KV head (spec §3.3). W_UK is held
    // as the checkpoint stores it, so which side is transposed depends on its orientation (weights.h).
    mx::array q_lat = w.embed_q.apply(q_nope, /*transpose=*/!w.embed_q_is_kv_b_rows);  // [B, H, 1, r]
    mx::array ctx = mx::fast::scaled_dot_product_attention(q_lat, latent_all, latent_all, scale, "array",
                                                           pe_scores);  // [B, H, 1, r]
    out = w.unembed_out.apply(ctx);                                    // [B, H, 1, v]
  } else {
    // Expanded: keys/values per head from the latents; head dim stays 128 for the fused kernels.
    mx::array k = w.embed_q.apply(latent_all, /*transpose=*/w.embed_q_is_kv_b_rows);  // [B, H, S, nope]
    mx::array v = w.unembed_out.apply(latent_all);                    // [B, H, S, v]
    out = mx::fast::scaled_dot_product_attention(q_nope, k, v, scale, "array", pe_scores);  // [B, H, L, v]
  }
  out = mx::reshape(mx::transpose(out, {0, 2, 1, 3}), {B, L, H * c.v_head_dim});  // [B, L, H·v]
  return w.o_proj(out);
}

}  // namespace k2
