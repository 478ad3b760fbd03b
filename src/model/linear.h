// Linear maps as the checkpoints store them: dense [out, in] or MLX-quantized (packed weight +
// scales [+ biases]); per-head MultiLinear (embed_q / unembed_out), stacked-expert SwitchLinear and
// the (possibly quantized) embedding table. Owns the matmul dispatch, not the loading.
#pragma once

#include <memory>
#include <optional>

#include "kernels/quantized_matmul.h"
#include "mlx/array.h"
#include "model/config.h"

namespace k2 {

// A weight as stored: dense, or packed with its quantization parameters.
struct WeightTensor {
  mlx::core::array weight;                 // dense [..., out, in] or packed uint32 [..., out, in·bits/32]
  std::optional<mlx::core::array> scales;  // [..., out, in/group]
  std::optional<mlx::core::array> biases;  // [..., out, in/group] (affine only)
  std::optional<QuantSpec> quant;          // set iff packed
  // k2mlx's CPU kernels, when the model was loaded to use them (else MLX's quantized kernels run).
  std::shared_ptr<kernels::CpuKernels> cpu_kernels;

  bool quantized() const { return quant.has_value(); }
  // True when a matmul of x with this weight runs on our CPU kernels (a CPU stream and a format they handle).
  bool uses_cpu_kernels(const mlx::core::array& x) const;
  size_t nbytes() const;
  // The weight as a dense array of `dtype` (dequantizing if needed).
  mlx::core::array dense(mlx::core::Dtype dtype) const;
};

// y = x Wᵀ for W [out, in].
struct Linear {
  WeightTensor w;
  mlx::core::array operator()(const mlx::core::array& x) const;
};

// Per-head linear, W [heads, out, in]: x [B, heads, L, in] -> [B, heads, L, out] when transpose,
// else x [B, heads, L, out] -> [B, heads, L, in] (x W, used to expand latents into keys).
struct MultiLinear {
  WeightTensor w;
  mlx::core::array apply(const mlx::core::array& x, bool transpose = true) const;
};

// Stacked experts W [experts, out, in]; x [..., 1, 1, in] with indices [..., k] -> [..., k, 1, out].
struct SwitchLinear {
  WeightTensor w;
  mlx::core::array apply(const mlx::core::array& x, const mlx::core::array& indices, bool sorted) const;
};

// Token embedding table [vocab, hidden] (dense or quantized rows); also usable as a tied lm_head.
struct Embedding {
  WeightTensor w;
  // [B, L] -> [B, L, hidden] in `dtype` (quantized rows are dequantized straight to it).
  mlx::core::array lookup(const mlx::core::array& ids, mlx::core::Dtype dtype) const;
};

}  // namespace k2
