// Matmul dispatch for dense and MLX-quantized weights (mlx::core::quantized_matmul, gather_qmm),
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

mx::array Linear::operator()(const mx::array& x) const {
  // Quantized outputs take the promoted dtype of x and the scales; keep the activation dtype.
  if (w.quant)
    return mx::astype(mx::quantized_matmul(x, w.weight, *w.scales, w.biases, /*transpose=*/true, w.quant->group_size,
                                           w.quant->bits, w.quant->mode),
                      x.dtype());
  return mx::matmul(x, mx::transpose(w.weight));
}

mx::array MultiLinear::apply(const mx::array& x, bool transpose) const {
  if (w.quant)
    return mx::astype(mx::quantized_matmul(x, w.weight, *w.scales, w.biases, transpose, w.quant->group_size,
                                           w.quant->bits, w.quant->mode),
                      x.dtype());
  return mx::matmul(x, transpose ? mx::swapaxes(w.weight, -1, -2) : w.weight);
}

mx::array SwitchLinear::apply(const mx::array& x, const mx::array& indices, bool sorted) const {
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
