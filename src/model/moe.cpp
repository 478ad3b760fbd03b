// MoE routing and expert dispatch. Routing follows DeepSeek-V3 inference/model.py Gate (sigmoid,
// bias for selection, group top-2 sums, -inf for dropped groups); expert execution mirrors mlx-lm
// SwitchGLU (sorting token-expert pairs for long inputs).
#include "model/moe.h"

#include <limits>

#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

mx::array silu_mul(const mx::array& gate, const mx::array& up) {
  // Compiled once (shapeless) so the three elementwise ops run as one fused kernel, as mlx-lm's
  // swiglu does; this also keeps bf16 rounding identical to the reference.
  static const auto fused = mx::compile(
      [](const std::vector<mx::array>& in) -> std::vector<mx::array> {
        return {mx::multiply(mx::multiply(in[0], mx::sigmoid(in[0])), in[1])};
      },
      /*shapeless=*/true);
  return fused({gate, up})[0];
}

mx::array swiglu_mlp(const MlpWeights& w, const mx::array& x) {
  return w.down_proj(silu_mul(w.gate_proj(x), w.up_proj(x)));
}

std::pair<mx::array, mx::array> select_experts(const ModelConfig& c, const mx::array& logits,
                                               const mx::array& correction_bias) {
  const int E = c.n_routed_experts, k = c.num_experts_per_tok;
  mx::array scores = mx::sigmoid(mx::astype(logits, mx::float32));  // weights come from these
  mx::array choice = mx::add(scores, correction_bias);                // selection only (spec §5)
  if (c.n_group > 1) {
    mx::Shape grouped = choice.shape();
    grouped.back() = E / c.n_group;
    grouped.insert(grouped.end() - 1, c.n_group);
    mx::array g = mx::reshape(choice, grouped);                                      // [..., G, E/G]
    mx::array group_scores = mx::sum(mx::topk(g, 2, -1), -1, /*keepdims=*/true);     // [..., G, 1]
    const int drop = c.n_group - c.topk_group;
    if (drop > 0) {
      mx::array dropped = mx::slice(mx::argpartition(group_scores, drop - 1, -2),
                                    mx::Shape(group_scores.ndim(), 0),
                                    [&] { mx::Shape s = group_scores.shape(); s[s.size() - 2] = drop; return s; }());
      // Dropped groups can never be selected (DS-ref masks with -inf; HF/mlx-lm use 0.0, which differs
      // only when biased scores are negative).
      mx::Shape upd = dropped.shape();
      upd.back() = E / c.n_group;
      mx::array neg = mx::full(upd, -std::numeric_limits<float>::infinity(), mx::float32);
      g = mx::put_along_axis(g, mx::broadcast_to(dropped, upd), neg, -2);
    }
    choice = mx::reshape(g, choice.shape());
  }
  mx::Shape stop = choice.shape();
  stop.back() = k;
  mx::array inds = mx::slice(mx::argpartition(mx::negative(choice), k - 1, -1), mx::Shape(choice.ndim(), 0), stop);
  mx::array weights = mx::take_along_axis(scores, inds, -1);  // unbiased sigmoid scores
  if (k > 1 && c.norm_topk_prob) weights = mx::divide(weights, mx::sum(weights, -1, /*keepdims=*/true));
  weights = mx::multiply(weights, mx::array(static_cast<float>(c.routed_scaling_factor), mx::float32));
  return {mx::astype(inds, mx::uint32), weights};
}

std::pair<mx::array, mx::array> route(const ModelConfig& c, const mx::array& router_weight,
                                      const mx::array& correction_bias, const mx::array& x) {
  // The router matmul runs in the activation dtype, as mlx-lm does (HF upcasts it to float32): with
  // bf16 activations a float32 router picks different experts at near-ties than the mlx-lm reference.
  // Everything after it (sigmoid, bias, top-k, weights) is float32.
  mx::array logits = mx::matmul(x, mx::transpose(router_weight));
  return select_experts(c, logits, correction_bias);
}

namespace {

// SwiGLU over the chosen experts: x [..., hidden], inds [..., k] -> [..., k, hidden].
mx::array switch_glu(const MoeWeights& w, const mx::array& x, const mx::array& inds) {
  const int k = inds.shape(-1);
  const int D = x.shape(-1);
  mx::Shape lead = inds.shape();  // [..., k]
  // Our CPU kernels group rows by expert themselves; MLX's gather_qmm needs them sorted first.
  if (static_cast<int>(inds.size()) >= 64 && !w.gate_proj.w.uses_cpu_kernels(x)) {
    // Many token-expert pairs: sort them by expert so each expert's weights are streamed once.
    const int pairs = static_cast<int>(inds.size());
    mx::array flat = mx::flatten(inds);                                  // [N·k]
    mx::array order = mx::argsort(flat);
    mx::array inverse = mx::argsort(order);
    mx::array tokens = mx::reshape(x, {pairs / k, 1, D});                // [N, 1, D]
    mx::array xs = mx::take(tokens, mx::floor_divide(order, mx::array(k, order.dtype())), 0);  // [N·k, 1, D]
    mx::array idx = mx::take(flat, order, 0);
    mx::array g = w.gate_proj.apply(xs, idx, true);
    mx::array u = w.up_proj.apply(xs, idx, true);
    mx::array y = w.down_proj.apply(silu_mul(g, u), idx, true);  // [N·k, 1, D]
    y = mx::take(y, inverse, 0);
    lead.push_back(D);
    return mx::reshape(y, lead);
  }
  mx::Shape xs_shape = x.shape();
  xs_shape.insert(xs_shape.end() - 1, {1, 1});
  mx::array xs = mx::reshape(x, xs_shape);  // [..., 1, 1, D]
  mx::array g = w.gate_proj.apply(xs, inds, false);  // [..., k, 1, I]
  mx::array u = w.up_proj.apply(xs, inds, false);
  mx::array y = w.down_proj.apply(silu_mul(g, u), inds, false);  // [..., k, 1, D]
  return mx::squeeze(y, -2);
}

}  // namespace

mx::array moe_forward(const ModelConfig& c, const MoeWeights& w, const mx::array& x) {
  auto [inds, weights] = route(c, w.gate_weight, w.e_score_correction_bias, x);
  mx::array y = switch_glu(w, x, inds);  // [..., k, D]
  // Weighted sum over the k experts in float32, then back to the activation dtype (as mlx-lm).
  y = mx::astype(mx::sum(mx::multiply(y, mx::expand_dims(weights, -1)), -2), x.dtype());
  if (w.shared_experts) y = mx::add(y, swiglu_mlp(*w.shared_experts, x));
  return y;
}

}  // namespace k2
