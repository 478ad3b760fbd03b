// The one place that absorbs MLX API drift between releases (see mlx-cpp-notes.md §2:
// gather_qmm gained a global_scale parameter before sorted_indices in 0.32.3).
#pragma once

#include <optional>
#include <string>

#include "mlx/mlx.h"
#include "mlx/version.h"

namespace k2::compat {

inline mlx::core::array gather_qmm(const mlx::core::array& x, const mlx::core::array& w,
                                   const mlx::core::array& scales,
                                   const std::optional<mlx::core::array>& biases,
                                   const mlx::core::array& rhs_indices, int group_size, int bits,
                                   const std::string& mode, bool sorted_indices) {
#if MLX_VERSION_NUMERIC >= 32003
  return mlx::core::gather_qmm(x, w, scales, biases, std::nullopt, rhs_indices, /*transpose=*/true,
                               group_size, bits, mode, /*global_scale=*/std::nullopt, sorted_indices);
#else
  return mlx::core::gather_qmm(x, w, scales, biases, std::nullopt, rhs_indices, /*transpose=*/true,
                               group_size, bits, mode, sorted_indices);
#endif
}

// MLX's CPU backend implements gather_mm for float32 only ("[GatherMM::eval] Currently only supports
// float32"), so unquantized experts run in float32 there and the result returns to the input dtype.
inline mlx::core::array gather_mm(const mlx::core::array& x, const mlx::core::array& w_t,
                                  const mlx::core::array& rhs_indices, bool sorted_indices) {
  namespace mx = mlx::core;
  if (x.dtype() != mx::float32 && mx::default_device() == mx::Device::cpu)
    return mx::astype(mx::gather_mm(mx::astype(x, mx::float32), mx::astype(w_t, mx::float32), std::nullopt,
                                    rhs_indices, sorted_indices),
                      x.dtype());
  return mx::gather_mm(x, w_t, std::nullopt, rhs_indices, sorted_indices);
}

}  // namespace k2::compat
