// The blocked causal attention kernel against MLX's own ops (the composition softmax(q·kᵀ·scale + causal
// mask)·v in float32, which the model used before the kernel), for the SIMD and the scalar block ops, one
// and two threads, and shapes that cut every block edge: L not a multiple of the 64-row query block, S
// not a multiple of the 256-key block, a chunk at offset 0 and one late in the context.
#include <gtest/gtest.h>

#include <memory>

#include "attn_kernels/causal_attention.h"
#include "kernels/quantized_matmul.h"
#include "mlx/mlx.h"

namespace {
namespace mx = mlx::core;
using k2::kernels::CpuKernels;
using k2::kernels::SimdLevel;

// softmax over keys of scale·(q_nope·kᵀ + q_pe·k_peᵀ) with query i at position S - L + i, then · v.
mx::array reference(const mx::array& qn, const mx::array& qp, const mx::array& k, const mx::array& kp,
                    const mx::array& v, float scale) {
  const int L = qn.shape(2), S = k.shape(2);
  mx::array scores = mx::multiply(mx::add(mx::matmul(qn, mx::swapaxes(k, -1, -2)), mx::matmul(qp, mx::swapaxes(kp, -1, -2))),
                                  mx::array(scale));  // [B, H, L, S]
  mx::array q_pos = mx::reshape(mx::arange(S - L, S, mx::int32), {L, 1});
  mx::array k_pos = mx::reshape(mx::arange(0, S, mx::int32), {1, S});
  scores = mx::where(mx::greater_equal(q_pos, k_pos), scores, mx::array(-1e30f));
  return mx::matmul(mx::softmax(scores, -1, /*precise=*/true), v);
}

float max_abs_diff(const mx::array& a, const mx::array& b) { return mx::max(mx::abs(a - b)).item<float>(); }

TEST(CausalAttention, MatchesMlxOpsAcrossBlockEdges) {
  const mx::Stream cpu = mx::default_stream(mx::Device::cpu);
  struct Case { int B, H, L, S; };
  for (const Case& c : {Case{1, 2, 1, 1}, Case{1, 2, 70, 70}, Case{2, 3, 130, 300}, Case{1, 2, 65, 600},
                        Case{1, 1, 300, 300}}) {
    mx::random::seed(c.L * 1000 + c.S);
    mx::array qn = mx::random::normal({c.B, c.H, c.L, 128}), qp = mx::random::normal({c.B, c.H, c.L, 64});
    mx::array k = mx::random::normal({c.B, c.H, c.S, 128}), kp = mx::random::normal({c.B, 1, c.S, 64});
    mx::array v = mx::random::normal({c.B, c.H, c.S, 96});
    const float scale = 0.1f;  // scores of a few units, so the softmax is neither flat nor one-hot
    mx::array want = reference(qn, qp, k, kp, v, scale);
    for (auto kernels : {std::make_shared<CpuKernels>(2), std::make_shared<CpuKernels>(1, SimdLevel::scalar)}) {
      mx::array got = k2::attn_kernels::causal_attention(kernels, qn, qp, k, kp, v, scale, cpu);
      ASSERT_EQ(got.shape(), want.shape());
      // Different summation orders in float32 over at most 600 terms of |v| ~ 1: ~1e-6; a wrong mask or
      // block edge moves outputs by ~0.1.
      EXPECT_LT(max_abs_diff(got, want), 2e-5f)
          << "B=" << c.B << " H=" << c.H << " L=" << c.L << " S=" << c.S << " threads=" << kernels->threads()
          << " simd=" << static_cast<int>(kernels->level());
    }
  }
}

TEST(CausalAttention, RejectsMismatchedShapes) {
  const mx::Stream cpu = mx::default_stream(mx::Device::cpu);
  auto kernels = std::make_shared<CpuKernels>(1);
  mx::array q = mx::zeros({1, 2, 8, 16}), qp = mx::zeros({1, 2, 8, 4}), k = mx::zeros({1, 2, 4, 16});
  mx::array kp = mx::zeros({1, 1, 4, 4}), v = mx::zeros({1, 2, 4, 16});
  EXPECT_THROW(k2::attn_kernels::causal_attention(kernels, q, qp, k, kp, v, 1.0f, cpu), std::invalid_argument);
}

}  // namespace
