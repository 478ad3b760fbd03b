// Matmul dispatch for dense and MLX-quantized weights: k2mlx's CPU kernels (kernels/) when the weight
// carries them and the computation runs on a CPU stream, otherwise MLX's quantized_matmul / gather_qmm,
// mirroring what mlx-lm's nn.QuantizedLinear / QuantizedSwitchLinear / QuantizedEmbedding compute.
#include "model/linear.h"

#include "mlx/mlx.h"
#include "model/mlx_compat.h"

namespace k2 {
namespace mx = mlx::core;

size_t WeightTensor::nbytes() const {
  size_t n = weight.nbytes();
  if (scales) n += scales->nbytes();
  if (biases) n += biases->nbytes();
  return n;
}

mx::array WeightTensor::dense(mx::Dtype dtype) const {
  if (!quant) return mx::astype(weight, dtype);
  return mx::dequantize(weight, *scales, biases, quant->group_size, quant->bits, quant->mode, std::nullopt,
                        dtype);
}

bool WeightTensor::uses_cpu_kernels(const mx::array& x) const {
  return cpu_kernels && quant &&
         kernels::handles(x, *scales, biases, quant->bits, quant->group_size, quant->mode,
                          mx::default_stream(mx::default_device()));
}

namespace {

mx::array cpu_matmul(const WeightTensor& w, const mx::array& x, const std::optional<mx::array>& indices) {
  return kernels::quantized_matmul(w.cpu_kernels, x, w.weight, *w.scales, *w.biases, w.quant->bits,
                                   w.quant->group_size, indices, mx::default_stream(mx::default_device()));
}

}  // namespace

mx::array Linear::operator()(const mx::array& x) const {
  if (w.uses_cpu_kernels(x)) return mx::astype(cpu_matmul(w, x, std::nullopt), x.dtype());
  // Quantized outputs take the promoted dtype of x and the scales; keep the activation dtype.
  if (w.quant)
    return mx::astype(mx::quantized_matmul(x, w.weight, *w.scales, w.biases, /*transpose=*/true, w.quant->group_size,
                                           w.quant->bits, w.quant->mode),
                      x.dtype());
  return mx::matmul(x, mx::transpose(w.weight));
}

mx::array MultiLinear::apply(const mx::array& x, bool transpose) const {
  if (transpose && x.ndim() == 4 && w.uses_cpu_kernels(x)) {
    // The heads are the experts of one gathered matmul: x [B, H, L, in] uses W[h] for head h, and a
    // head-shared x [B, 1, L, in] (the latents, when expanding values) goes through every W[h].
    const int B = x.shape(0), Hx = x.shape(1), L = x.shape(2), in = x.shape(3), H = w.weight.shape(0);
    if (Hx == H) {
      mx::array heads = mx::broadcast_to(mx::reshape(mx::arange(H, mx::uint32), {1, H, 1}), {B, H, L});
      mx::array y = cpu_matmul(w, mx::reshape(x, {B * H * L, in}), mx::reshape(heads, {B * H * L, 1}));  // [B·H·L, 1, out]
      return mx::astype(mx::reshape(y, {B, H, L, y.shape(-1)}), x.dtype());
    }
    if (Hx == 1) {
      mx::array heads = mx::broadcast_to(mx::reshape(mx::arange(H, mx::uint32), {1, H}), {B * L, H});
      mx::array y = cpu_matmul(w, mx::reshape(x, {B * L, in}), heads);  // [B·L, H, out]
      return mx::astype(mx::transpose(mx::reshape(y, {B, L, H, y.shape(-1)}), {0, 2, 1, 3}), x.dtype());
    }
  }
  if (w.quant)
    return mx::astype(mx::quantized_matmul(x, w.weight, *w.scales, w.biases, transpose, w.quant->group_size,
                                           w.quant->bits, w.quant->mode),
                      x.dtype());
  return mx::matmul(x, transpose ? mx::swapaxes(w.weight, -1, -2) : w.weight);
}

mx::array SwitchLinear::apply(const mx::array& x, const mx::array& indices, bool sorted) const {
  if (w.uses_cpu_kernels(x)) {
    // x [..., X, 1, in] with X = 1 (every chosen expert sees the same row) or X = k (one row per expert).
    const int k = indices.shape(-1), in = x.shape(-1);
    const int rows = static_cast<int>(indices.size() / k);
    mx::array y = x.shape(-3) == 1
                      ? cpu_matmul(w, mx::reshape(x, {rows, in}), mx::reshape(indices, {rows, k}))       // [T, k, out]
                      : cpu_matmul(w, mx::reshape(x, {rows * k, in}), mx::reshape(indices, {rows * k, 1}));  // [T·k, 1, out]
    mx::Shape shape = indices.shape();
    shape.push_back(1);
    shape.push_back(y.shape(-1));
    return mx::astype(mx::reshape(y, shape), x.dtype());  // [..., k, 1, out]
  }
  if (w.quant)
    return mx::astype(compat::gather_qmm(x, w.weight, *w.scales, w.biases, indices, w.quant->group_size,
                                         w.quant->bits, w.quant->mode, sorted),
                      x.dtype());
  return compat::gather_mm(x, mx::swapaxes(w.weight, -1, -2), indices, sorted);
}

mx::array Embedding::lookup(const mx::array& ids, mx::Dtype dtype) const {
  if (!w.quant) return mx::astype(mx::take(w.weight, ids, 0), dtype);
  // Dequantize only the rows we need, with scales/biases promoted to `dtype` first: MLX dequantizes
  // in the scales' dtype, so bf16 scales would round the rows to bf16 even when float32 is asked for.
  auto rows = [&](const mx::array& a) {
    mx::array r = mx::take(a, ids, 0);
    return a.dtype() == mx::uint8 ? r : mx::astype(r, dtype);
  };
  return mx::dequantize(mx::take(w.weight, ids, 0), rows(*w.scales),
                        w.biases ? std::optional<mx::array>(rows(*w.biases)) : std::nullopt, w.quant->group_size,
                        w.quant->bits, w.quant->mode, std::nullopt, dtype);
}

}  // namespace k2
