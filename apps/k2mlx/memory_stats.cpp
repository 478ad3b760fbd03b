// Predicted and measured peak memory for the commands' --stats lines and `inspect`.
#include "memory_stats.h"

#include <sys/resource.h>

#include <fmt/format.h>

#include "common.h"
#include "io/checkpoint.h"
#include "mlx/mlx.h"
#include "model/footprint.h"

namespace k2::cli {
namespace mx = mlx::core;

PrefillPeak predict_prefill(const std::string& model_dir, const ModelConfig& c, const LoadOptions& o, int tokens,
                            const PrefillChunking& chunking, bool all_positions) {
  const Checkpoint ck(model_dir);
  const int last = o.last_layer < 0 ? c.num_hidden_layers : std::min(o.last_layer, c.num_hidden_layers);
  const ByteRange range{o.first_layer, last, o.load_embedding, o.load_head};
  const size_t weights = bound_weight_bytes(ck, c, range, mx::size_of(o.dtype));
  return predict_prefill_peak(c, weights, activations_for(o.dtype, o.cpu_kernels != nullptr), last - o.first_layer,
                              o.load_head, tokens, chunking, all_positions);
}

std::string describe_peak(const PrefillPeak& p) {
  auto b = [](size_t n) { return format_bytes(static_cast<double>(n)); };
  return fmt::format("weights {} + KV cache {} (+ {} while it grows) + chunk buffers {} = {}", b(p.weights),
                     b(p.runtime.kv_cache), b(p.runtime.kv_growth), b(p.runtime.workspace), b(p.total()));
}

size_t max_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
#if defined(__APPLE__)
  return static_cast<size_t>(ru.ru_maxrss);  // bytes on macOS
#else
  return static_cast<size_t>(ru.ru_maxrss) * 1024;  // KiB on Linux
#endif
}

void print_stats_line(const PrefillPeak& predicted, double seconds) {
  const size_t peak = mx::get_peak_memory();
  fmt::print(stderr,
             "stats: seconds={:.3f} peak_mlx_bytes={} predicted_peak_bytes={} peak_over_predicted={:.3f} "
             "max_rss_bytes={} prefill_chunk={}\n",
             seconds, peak, predicted.total(),
             predicted.total() ? static_cast<double>(peak) / static_cast<double>(predicted.total()) : 0.0,
             max_rss_bytes(), predicted.chunk);
}

}  // namespace k2::cli
