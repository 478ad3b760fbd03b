// Flags and helpers shared by the k2mlx subcommands: model-loading options (dtype, FP8 handling,
// layer range), the loading progress bar and byte formatting.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/model.h"

namespace k2::cli {

struct ModelFlags {
  std::string model_dir;
  std::string dtype = "auto";      // auto | float32 | bfloat16 | float16
  std::string fp8_requantize;      // "" or BITS[:GROUP]
  std::string kernels = "auto";    // auto | k2 | mlx: who computes quantized matmuls on the CPU
  int threads = 0;                 // threads of k2mlx's CPU kernels; 0 = physical cores
  bool quiet = false;

  void add_to(CLI::App& app);
  LoadOptions load_options() const;  // throws InputError for bad values
};

// "a:b" -> {a, b}; either side may be empty (defaults 0 and n).
std::pair<int, int> parse_range(const std::string& text, int n);
std::string format_bytes(double bytes);
mlx::core::Dtype resolve_dtype(const std::string& name);

// Loads the model with a progress bar on stderr (unless quiet).
Model load_model(const ModelFlags& flags, LoadOptions options);

}  // namespace k2::cli
