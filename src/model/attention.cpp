// MLA forward pass, following spec §3.2-3.4 (and mlx-lm deepseek_v3.py's arrangement, so that its
// numbers are reproduced): the rope part of the scores is computed separately and passed to SDPA
// as an additive mask, which keeps the fused kernels usable on Metal. Prefill on CPU streams runs on our
// blocked causal attention instead (no [L, S] buffers; MLX's CPU matmul and exp are scalar loops on Linux).
#include "model/attention.h"

#include <limits>

#include <fmt/format.h>

#include "core/error.h"
#include "attn_kernels/causal_attention.h"
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

// The projections of x [B, L, hidden] that depend on the weights only (no cache, no position).
struct Projected {
  mx::array q_nope;  // [B, H, L, nope]
  mx::array q_pe;    // [B, H, L, 64], not rotated yet
  mx::array latent;  // [B, 1, L, r], normalised
  mx::array k_pe;    // [B, 1, L, 64], not rotated yet
};

Projected project(const ModelConfig& c, const AttentionWeights& w, const mx::array& x) {
  const int B = x.shape(0), L = x.shape(1);
  const int H = c.num_attention_heads, nope = c.qk_nope_head_dim, rope_dim = c.qk_rope_head_dim;
  const int r = c.kv_lora_rank;
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
  return {q_nope, q_pe, latent, k_pe};
}

// The rope part of the scores, q_pe · k_peᵀ · scale: [B, H, L, 64] x [B, 1, S, 64] -> [B, H, L, S].
mx::array rope_scores(const mx::array& q_pe, const mx::array& k_pe_all, float scale) {
  return mx::matmul(mx::multiply(q_pe, mx::array(scale, q_pe.dtype())), mx::swapaxes(k_pe_all, -1, -2));
}

mx::array output(const ModelConfig& c, const AttentionWeights& w, const mx::array& out) {  // [B, H, L, v]
  const int B = out.shape(0), L = out.shape(2);
  return w.o_proj(mx::reshape(mx::transpose(out, {0, 2, 1, 3}), {B, L, c.num_attention_heads * c.v_head_dim}));
}

// Decode attention in the absorbed form: q_lat [B, H, 1, r] against the latents [B, 1, S, r] as one KV head
// shared by all H query heads, plus the rope scores [B, H, 1, S] (already scaled). The heads are folded into
// the rows of one matmul, so the cache is read once per layer and step; MLX's SDPA has no kernel for a head
// dim of 512 and its fallback multiplies every head against the cache separately (measured: 31 % of a
// decode step at 512 tokens of context on the CPU, reading the cache 64 times). Same maths as
// softmax(q·kᵀ·scale + mask)·v, with the softmax in float32.
mx::array latent_attention(const mx::array& q_lat, const mx::array& latent, const mx::array& pe_scores, float scale) {
  const int B = q_lat.shape(0), H = q_lat.shape(1), r = q_lat.shape(3), S = latent.shape(2);
  mx::array q = mx::reshape(mx::multiply(q_lat, mx::array(scale, q_lat.dtype())), {B, 1, H, r});
  mx::array scores = mx::add(mx::matmul(q, mx::swapaxes(latent, -1, -2)), mx::reshape(pe_scores, {B, 1, H, S}));
  mx::array probs = mx::softmax(scores, -1, /*precise=*/true);                  // [B, 1, H, S]
  return mx::reshape(mx::matmul(probs, latent), {B, H, 1, r});                 // [B, H, 1, r]
}

}  // namespace

mx::array mla_attention(const ModelConfig& c, const Rope& rope, const AttentionWeights& w, const mx::array& x,
                        LayerCache& cache) {
  const int L = x.shape(1);
  const float scale = static_cast<float>(c.softmax_scale());
  const int offset = cache.offset();
  Projected p = project(c, w, x);
  mx::array q_pe = rope.apply(p.q_pe, offset);
  mx::array k_pe = rope.apply(p.k_pe, offset);
  auto [latent_all, k_pe_all] = cache.update_and_fetch(p.latent, k_pe);  // [B, 1, S, r], [B, 1, S, 64]

  mx::array out = mx::array(0.0f);
  if (L > 1 && w.cpu_kernels && attn_kernels::handles(p.q_nope, mx::default_stream(mx::default_device()))) {
    mx::array k = w.embed_q.apply(latent_all, /*transpose=*/w.embed_q_is_kv_b_rows);  // [B, H, S, nope]
    mx::array v = w.unembed_out.apply(latent_all);                                     // [B, H, S, v]
    out = attn_kernels::causal_attention(w.cpu_kernels, p.q_nope, q_pe, k, k_pe_all, v, scale,
                                         mx::default_stream(mx::default_device()));  // [B, H, L, v]
    return output(c, w, out);
  }
  mx::array pe_scores = rope_scores(q_pe, k_pe_all, scale);  // [B, H, L, S]
  if (L > 1) pe_scores = causal_where(pe_scores, offset);

  if (L == 1) {
    // Absorbed: q_lat = W_UKᵀ q_nope; attend over the latents as one shared KV head (spec §3.3). W_UK is held
    // as the checkpoint stores it, so which side is transposed depends on its orientation (weights.h).
    mx::array q_lat = w.embed_q.apply(p.q_nope, /*transpose=*/!w.embed_q_is_kv_b_rows);  // [B, H, 1, r]
    mx::array ctx = latent_attention(q_lat, latent_all, pe_scores, scale);  // [B, H, 1, r]
    out = w.unembed_out.apply(ctx);                                    // [B, H, 1, v]
  } else {
    // Expanded: keys/values per head from the latents; head dim stays 128 for the fused kernels.
    mx::array k = w.embed_q.apply(latent_all, /*transpose=*/w.embed_q_is_kv_b_rows);  // [B, H, S, nope]
    mx::array v = w.unembed_out.apply(latent_all);                    // [B, H, S, v]
    out = mx::fast::scaled_dot_product_attention(p.q_nope, k, v, scale, "array", pe_scores);  // [B, H, L, v]
  }
  return output(c, w, out);
}

mx::array mla_attention(const ModelConfig& c, const Rope& rope, const AttentionWeights& w, const mx::array& x,
                        const std::vector<LayerCache*>& caches) {
  const int B = x.shape(0);
  if (x.shape(1) != 1 || static_cast<int>(caches.size()) != B)
    throw Error(fmt::format("batched attention takes one token per row and one cache per row, got [{}, {}] rows "
                            "and {} caches", B, x.shape(1), caches.size()));
  const int H = c.num_attention_heads, rope_dim = c.qk_rope_head_dim, r = c.kv_lora_rank;
  const float scale = static_cast<float>(c.softmax_scale());
  Projected p = project(c, w, x);
  // Absorbed form as in the single-sequence decode; q_lat needs no cache, so it runs over all rows at once.
  mx::array q_lat = w.embed_q.apply(p.q_nope, /*transpose=*/!w.embed_q_is_kv_b_rows);  // [B, H, 1, r]
  // Per row: its own positions and cache length. A loop of B small attentions instead of one padded
  // attention with a mask: the softmax then runs over exactly the keys a lone step sees (no padded keys
  // whose -inf could change the reduction), and decode attention is a small share of the time next to
  // the weight-bound projections and experts above.
  std::vector<mx::array> rows;
  rows.reserve(B);
  for (int b = 0; b < B; ++b) {
    LayerCache& cache = *caches[b];
    const int offset = cache.offset();
    mx::array q_pe = rope.apply(mx::slice(p.q_pe, {b, 0, 0, 0}, {b + 1, H, 1, rope_dim}), offset);  // [1, H, 1, 64]
    mx::array k_pe = rope.apply(mx::slice(p.k_pe, {b, 0, 0, 0}, {b + 1, 1, 1, rope_dim}), offset);  // [1, 1, 1, 64]
    mx::array latent = mx::slice(p.latent, {b, 0, 0, 0}, {b + 1, 1, 1, r});                        // [1, 1, 1, r]
    auto [latent_all, k_pe_all] = cache.update_and_fetch(latent, k_pe);  // [1, 1, S_b, r], [1, 1, S_b, 64]
    mx::array q_lat_b = mx::slice(q_lat, {b, 0, 0, 0}, {b + 1, H, 1, r});                          // [1, H, 1, r]
    rows.push_back(latent_attention(q_lat_b, latent_all, rope_scores(q_pe, k_pe_all, scale), scale));  // [1, H, 1, r]
  }
  mx::array ctx = B == 1 ? rows.front() : mx::concatenate(rows, 0);  // [B, H, 1, r]
  return output(c, w, w.unembed_out.apply(ctx));                     // [B, H, 1, v] -> [B, 1, hidden]
}

}  // namespace k2
