// Registration of the prefill flags, with range checks so that a bad value is a parse error naming the flag.
#include "prefill_flags.h"

#include "sampling_flags.h"

namespace k2::cli {

void PrefillFlags::add_to(CLI::App& app) {
  app.add_option("--prefill-chunk", chunk,
                 "Prompt tokens per prefill chunk; 0 = as many as fit in --prefill-memory-mib (at most 2048)")
      ->check(non_negative())
      ->capture_default_str();
  app.add_option("--prefill-memory-mib", memory_mib,
                 "Memory for one prefill chunk's transient buffers (attention scores, expert inputs), which sizes "
                 "the chunks; 0 = an eighth of the memory MLX may use")
      ->check(non_negative())
      ->capture_default_str();
}

PrefillChunking PrefillFlags::chunking() const {
  return {chunk, static_cast<size_t>(memory_mib * 1024 * 1024)};
}

}  // namespace k2::cli
