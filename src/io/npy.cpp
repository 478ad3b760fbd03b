// .npy output through mx::save (numpy.lib.format version 1.0). MLX writes C order, or Fortran order
// with fortran_order True for an array that is only column-contiguous; numpy reads both.
#include "io/npy.h"

#include <exception>
#include <memory>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/io.h"
#include "mlx/io/load.h"
#include "mlx/ops.h"

namespace k2 {
namespace mx = mlx::core;

void save_npy_float32(const std::string& path, const mx::array& a) {
  const mx::array f = mx::astype(a, mx::float32);
  try {
    // The Writer overload writes to `path` as given; the std::string one would append ".npy".
    mx::save(std::make_shared<mx::io::FileWriter>(path), f);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: cannot write the .npy file ({})", path, e.what()));
  }
}

}  // namespace k2
