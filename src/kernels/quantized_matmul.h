// k2mlx's CPU quantized matmul as an MLX primitive: y = x·Wᵀ on MLX affine weights exactly as stored
// (packed uint32 + scales + biases, 2/3/4/5/6/8 bits, groups 32/64/128), for one matrix or for a stack
// of experts chosen per row, multithreaded on our own pool and vectorized for the CPU it runs on.
// GPU streams and other formats keep MLX's kernels: callers ask handles() first.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "kernels/cpu_info.h"
#include "kernels/thread_pool.h"
#include "mlx/array.h"
#include "mlx/stream.h"

namespace k2::kernels {

// What every quantized matmul of a model shares: the worker threads and the chosen instruction set.
class CpuKernels {
 public:
  // threads <= 0: the number of physical cores. level: the best this CPU supports unless given.
  explicit CpuKernels(int threads = 0, std::optional<SimdLevel> level = std::nullopt);
  int threads() const { return pool_.threads(); }
  SimdLevel level() const { return level_; }
  ThreadPool& pool() { return pool_; }

 private:
  SimdLevel level_;
  ThreadPool pool_;
};

// True when quantized_matmul computes this case: a CPU stream, float activations, MLX affine weights with
// biases at a width and group size the kernels handle.
bool handles(const mlx::core::array& x, const mlx::core::array& scales, const std::optional<mlx::core::array>& biases,
             int bits, int group, const std::string& mode, const mlx::core::Stream& stream);

// Without indices: x [..., K], w [N, K·bits/32] -> [..., N].
// With indices [T, k] (uint32, each < E): x [T, K], w [E, N, K·bits/32] -> [T, k, N], row (t, j) using
// expert indices[t, j]; every selected expert's weights are read once per call, however many rows use it.
// The result is float32 (callers cast it to their activation dtype, as they do MLX's result).
mlx::core::array quantized_matmul(const std::shared_ptr<CpuKernels>& kernels, const mlx::core::array& x,
                                  const mlx::core::array& w, const mlx::core::array& scales,
                                  const mlx::core::array& biases, int bits, int group,
                                  const std::optional<mlx::core::array>& indices, const mlx::core::Stream& stream);

}  // namespace k2::kernels
