// Flags and helpers shared by the k2mlx subcommands: model-loading options (dtype, FP8 handling,
// layer range), the loading progress bar and byte formatting.
#pragma once

#include <functional>
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
  int load_threads = 0;            // reader threads while loading; 0 = default, 1 = read while binding
  bool quiet = false;
  bool progress = false;           // loading progress on stderr even when it is not a terminal

  void add_to(CLI::App& app);
  LoadOptions load_options() const;  // throws InputError for bad values
};

// "a:b" -> {a, b}; either side may be empty (defaults 0 and n).
std::pair<int, int> parse_range(const std::string& text, int n);
std::string format_bytes(double bytes);
mlx::core::Dtype resolve_dtype(const std::string& name);

// Checks --load-threads (0..64) and returns it; throws InputError naming the flag.
int check_load_threads(int n);

// A loading progress callback drawing "GB read / total, GB/s" on stderr: redrawn in place on a terminal,
// one line a second otherwise (when `forced`). Null when neither (not a terminal and not forced).
std::function<void(size_t, size_t)> load_progress_line(bool forced);

// Loads the model with a progress bar on stderr (unless quiet).
Model load_model(const ModelFlags& flags, LoadOptions options);

}  // namespace k2::cli
