// The prefill flags every model-running command shares (--prefill-chunk, --prefill-memory-mib): how a
// prompt is cut into chunks; the sizing itself is k2::prefill_chunk_size.
#pragma once

#include <CLI/CLI.hpp>

#include "engine/prefill_chunk.h"

namespace k2::cli {

struct PrefillFlags {
  int chunk = 0;
  double memory_mib = 0;

  void add_to(CLI::App& app);
  PrefillChunking chunking() const;
};

}  // namespace k2::cli
