// .npy writer (format: numpy.lib.format, version 1.0: magic, header dict padded to 64 bytes).
#include "io/npy.h"

#include <fstream>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/ops.h"
#include "mlx/transforms.h"

namespace k2 {
namespace mx = mlx::core;

void save_npy_float32(const std::string& path, const mx::array& a) {
  mx::array f = mx::contiguous(mx::astype(a, mx::float32));
  mx::eval(f);
  std::string shape = "(";
  for (size_t i = 0; i < f.shape().size(); ++i) shape += fmt::format("{},", f.shape()[i]);
  if (f.shape().size() > 1) shape.pop_back();
  shape += ")";
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", shape);
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');

  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError(fmt::format("{}: cannot open for writing", path));
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(f.data<float>()), static_cast<std::streamsize>(f.nbytes()));
  if (!out) throw Error(fmt::format("{}: write failed", path));
}

}  // namespace k2
