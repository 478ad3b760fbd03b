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
  if (w.quant)
    return mx::quantized_matmul(x, w.weight, *w.scales, w.biases, /*transpose=*/true, w.quant->group_size,
                                w.quant->bits, w.quant->mode);
  return mx::matmul(x, mx::transpose(w.weight));
}

mx::array MultiLinear::apply(const mx::array& x, bool transpose) const {
  if (w.quant)
    return mx::quantized_matmul(x, w.weight, *w.scales, w.biases, transpose, w.quant->group_size,
                                w.quant->bits, w.quant->mode);
  return mx::matmul(x, transpose ? mx::swapaxes(w.weight, -1, -2) : w.weight);
}

mx::array SwitchLinear::apply(const mx::array& x, const mx::array& indices, bool sorted) const {
  if (w.quant)
    return compat::gather_qmm(x, w.weight, *w.scales, w.biases, indices, w.quant->group_size, w.quant->bits,
                              w.quant->mode, sorted);
  return mx::gather_mm(x, mx::swapaxes(w.weight, -1, -2), std::nullopt, indices, sorted);
}

mx::array Embedding::lookup(const mx::array& ids) const {
  if (!w.quant) return mx::take(w.weight, ids, 0);
  // Dequantize only the rows we need: [B, L, packed] etc.
  return mx::dequantize(mx::take(w.weight, ids, 0), mx::take(*w.scales, ids, 0),
                        w.biases ? std::optional<mx::array>(mx::take(*w.biases, ids, 0)) : std::nullopt,
                        w.quant->group_size, w.quant->bits, w.quant->mode);
}

}  // namespace k2
