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

}  // namespace k2::compat
