// Per-tensor quantization inference: bits = 32·packed_cols / in_features, group = in_features /
// scale_cols (spec §6.4), validated against MLX's supported sets (spec §6.1, §6.2).
#include "model/quant.h"

#include <fmt/format.h>

#include "core/error.h"

namespace k2 {

bool valid_affine_bits(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
}

bool valid_group_size(int group) { return group == 32 || group == 64 || group == 128; }

std::string describe(const QuantSpec& q) {
  return fmt::format("{}-bit group {} {}", q.bits, q.group_size, q.mode);
}

std::optional<QuantSpec> declared_quant_for(const DeclaredQuantization& dq, const std::string& path) {
  auto it = dq.overrides.find(path);
  if (it != dq.overrides.end()) return it->second;
  return dq.global;
}

QuantSpec infer_quant_spec(const PackedShapes& s, const std::optional<QuantSpec>& declared) {
  auto implied = [&]() {
    std::string out;
    if (s.logical_in > 0 && (s.packed_cols * 32) % s.logical_in == 0)
      out += fmt::format("bits = 32·{}/{} = {}", s.packed_cols, s.logical_in, s.packed_cols * 32 / s.logical_in);
    else
      out += fmt::format("bits = 32·{}/{} is not an integer", s.packed_cols, s.logical_in);
    if (s.scale_cols > 0 && s.logical_in % s.scale_cols == 0)
      out += fmt::format(", group = {}/{} = {}", s.logical_in, s.scale_cols, s.logical_in / s.scale_cols);
    else
      out += fmt::format(", group = {}/{} is not an integer", s.logical_in, s.scale_cols);
    if (declared) out += fmt::format("; config.json declares {}", describe(*declared));
    if (declared && valid_affine_bits(declared->bits))
      out += fmt::format(" (which would need a packed width of {} and {} scale columns)",
                         s.logical_in * declared->bits / 32,
                         declared->group_size ? s.logical_in / declared->group_size : 0);
    return out;
  };
  auto fail = [&](const std::string& why) {
    return CheckpointError(fmt::format(
        "tensor '{}': packed weight {} with scales {} fits no valid quantization for the logical shape "
        "[{}, {}] from config.json: {} ({})",
        s.name, s.weight_shape, s.scales_shape, s.logical_out, s.logical_in, why, implied()));
  };
  if (s.logical_in <= 0 || s.packed_cols <= 0 || s.scale_cols <= 0) throw fail("empty dimension");
  if ((s.packed_cols * 32) % s.logical_in != 0) throw fail("bits is not an integer");
  if (s.logical_in % s.scale_cols != 0) throw fail("group size is not an integer");

  QuantSpec q;
  q.bits = static_cast<int>(s.packed_cols * 32 / s.logical_in);
  q.group_size = static_cast<int>(s.logical_in / s.scale_cols);
  if (s.has_biases) {
    q.mode = "affine";
    if (!valid_affine_bits(q.bits)) throw fail(fmt::format("{} bits is not an affine bit width", q.bits));
    if (!valid_group_size(q.group_size)) throw fail(fmt::format("group size {} is not 32, 64 or 128", q.group_size));
    return q;
  }
  // No biases: one of the floating-point modes (spec §6.2).
  if (declared && declared->mode != "affine" && declared->bits == q.bits && declared->group_size == q.group_size) {
    q.mode = declared->mode;
    return q;
  }
  if (q.bits == 4 && q.group_size == 32) q.mode = "mxfp4";
  else if (q.bits == 4 && q.group_size == 16) q.mode = "nvfp4";
  else if (q.bits == 8 && q.group_size == 32) q.mode = "mxfp8";
  else throw fail("no biases, and bits/group match no floating-point mode (mxfp4, nvfp4, mxfp8)");
  return q;
}

}  // namespace k2
