// k2mlx's CPU attention for prefill as an MLX primitive: causal softmax attention of a chunk of queries over
// every cached position, in blocks with an online softmax (as flash attention arranges it), so that no
// [queries, keys] score or mask buffer is ever allocated; the MLA rope key is shared by all heads (MQA).
// GPU streams and non-float32 activations keep MLX's scaled_dot_product_attention: callers ask handles().
#pragma once

#include <memory>

#include "kernels/quantized_matmul.h"
#include "mlx/array.h"
#include "mlx/stream.h"

namespace k2::attn_kernels {

// True when causal_attention computes this case: a CPU stream and float32 inputs.
bool handles(const mlx::core::array& q_nope, const mlx::core::Stream& stream);

// q_nope [B, H, L, dn], q_pe [B, H, L, dr], k [B, H, S, dn], k_pe [B, 1, S, dr], v [B, H, S, dv] (S >= L)
// -> [B, H, L, dv] float32. Query i sits at position S - L + i and sees the keys at positions <= its own:
// out_i = Σ_j softmax_j(scale · (q_nope_i·k_j + q_pe_i·k_pe_j)) v_j. Work is split over `kernels`' threads
// (null or one thread: the calling thread alone).
mlx::core::array causal_attention(const std::shared_ptr<kernels::CpuKernels>& kernels,
                                  const mlx::core::array& q_nope, const mlx::core::array& q_pe,
                                  const mlx::core::array& k, const mlx::core::array& k_pe,
                                  const mlx::core::array& v, float scale, const mlx::core::Stream& stream);

}  // namespace k2::attn_kernels
