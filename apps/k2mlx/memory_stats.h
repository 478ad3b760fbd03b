// The memory numbers the commands print: the predicted peak of a prefill from the checkpoint's headers (the
// same figure `inspect` prints) and the measured one (`--stats`): MLX's allocator peak and the process's RSS.
#pragma once

#include <string>

#include "engine/prefill_chunk.h"
#include "model/weights.h"

namespace k2::cli {

// Predicted peak of prefilling `tokens` tokens with the range and dtype of `o`, from the headers in `model_dir`.
PrefillPeak predict_prefill(const std::string& model_dir, const ModelConfig& config, const LoadOptions& o,
                            int tokens, const PrefillChunking& chunking, bool all_positions);

// "weights W + KV cache K (+ G while it grows) + chunk buffers B = P" for a prediction.
std::string describe_peak(const PrefillPeak& p);

// The process's resident-set high-water mark in bytes (getrusage ru_maxrss).
size_t max_rss_bytes();

// One stderr line, `stats: key=value ...`: MLX's peak memory since the last mx::reset_peak_memory(), the max
// RSS of the process, the prediction and their ratio, and the seconds given.
void print_stats_line(const PrefillPeak& predicted, double seconds);

}  // namespace k2::cli
