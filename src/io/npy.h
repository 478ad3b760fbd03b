// Writing arrays as NumPy .npy files, so logits can be compared with any other implementation. MLX's
// mx::save writes the file; this adds the float32 conversion and k2's errors. Only float32 output.
#pragma once

#include <string>

#include "mlx/array.h"

namespace k2 {

// Evaluates `a`, converts it to float32 and writes it to `path` as .npy (exactly that path: unlike
// mx::save(std::string, …) no ".npy" is appended). Throws k2::Error when the file cannot be written.
void save_npy_float32(const std::string& path, const mlx::core::array& a);

}  // namespace k2
