// Writing arrays as NumPy .npy files (format version 1.0), so logits can be compared with any
// other implementation. Only float32 output; the caller converts.
#pragma once

#include <string>

#include "mlx/array.h"

namespace k2 {

// Evaluates `a`, converts it to float32 and writes it to `path` (C order). Throws k2::Error on I/O failure.
void save_npy_float32(const std::string& path, const mlx::core::array& a);

}  // namespace k2
