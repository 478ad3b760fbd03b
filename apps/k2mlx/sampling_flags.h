// The sampling flags of generate, chat and pipeline, declared once, with range checks so that an
// out-of-range value is a parse error (exit 2) that names the flag.
#pragma once

#include <CLI/CLI.hpp>

#include "engine/sampler.h"

namespace k2::cli {

// Registers --temp, --top-k, --top-p, --min-p, --repetition-penalty, --repetition-context and --seed on
// `app`, writing into `params` (whose current values are the defaults shown by --help).
void add_sampling_flags(CLI::App& app, SamplingParams& params);

// A CLI11 check that a number lies in the interval from `lo` to `hi`, each end open or closed.
CLI::Validator in_interval(double lo, bool lo_open, double hi, bool hi_open);
// A number >= 0 (CLI11's NonNegativeNumber prints an unreadable range for text that is no number).
CLI::Validator non_negative();

}  // namespace k2::cli
