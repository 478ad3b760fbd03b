// Quantization facts read from tensors: inferring bits / group size / mode from the shapes of a
// packed weight and its scales (spec §6.4), and checking them against what config.json declares.
// No tensor math here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace k2 {

struct PackedShapes {
  std::string name;          // module path, for messages
  int64_t logical_in = 0;    // input features expected from config.json
  int64_t logical_out = 0;
  int64_t packed_cols = 0;   // last dim of the uint32 weight
  int64_t scale_cols = 0;    // last dim of scales
  bool has_biases = false;   // affine mode stores biases
  std::string weight_shape;  // for messages, e.g. "[1536, 672]"
  std::string scales_shape;
};

// Infers the quantization of one tensor from its shapes. `declared` (the config's value, if any)
// breaks ties and picks among fp modes. Throws CheckpointError naming the tensor, its shapes, the
// logical shape from config.json and what each side implies when the shapes fit no valid format.
QuantSpec infer_quant_spec(const PackedShapes& s, const std::optional<QuantSpec>& declared);

bool valid_affine_bits(int bits);
bool valid_group_size(int group);

std::string describe(const QuantSpec& q);  // "3-bit group 64 affine"

// The spec config.json declares for a module path (override first, then global).
// Returns nullopt when the config declares the module unquantized or declares nothing.
std::optional<QuantSpec> declared_quant_for(const DeclaredQuantization& dq, const std::string& path);

}  // namespace k2
