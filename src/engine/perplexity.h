// Quality of a model on a text: perplexity over consecutive windows and, against a base model (the bf16 or FP8
// original of a quantized copy), the KL divergence of the next-token distributions, top-1 agreement and the
// positions that differ most — the figures llama.cpp's perplexity tool reports for a quantization.
#pragma once

#include <vector>

#include "engine/prefill_chunk.h"
#include "model/model.h"

namespace k2 {

struct PerplexityOptions {
  int window = 512;      // tokens per window; each window starts with an empty cache
  int score_from = -1;   // first scored token of a window (>= 1); -1 = window / 2, so every scored token has
                         // at least half a window of context (llama.cpp's rule)
  int max_windows = 0;   // 0 = every whole window of the text
  int worst = 5;         // how many of the most divergent positions to report (with a base model)
  PrefillChunking prefill;
};

// One scored token: `position` is its index in the whole token sequence.
struct ScoredToken {
  int position = 0;
  int token = 0;
  double nll = 0;        // -log p_model(token)
  double base_nll = 0;   // -log p_base(token)            (with a base model)
  double kl = 0;         // KL(p_base || p_model) in nats (with a base model)
  int top = 0, base_top = 0;  // argmax of each distribution
};

struct PerplexityReport {
  int windows = 0, window = 0, score_from = 0;
  std::vector<ScoredToken> scored;  // in text order
  bool has_base = false;

  // Means over the scored tokens with the standard error of each mean.
  double mean_nll = 0, nll_stderr = 0;
  double ppl() const;              // exp(mean_nll)
  double ppl_stderr() const;       // exp(mean_nll) * nll_stderr (first-order)
  double base_mean_nll = 0, base_nll_stderr = 0;
  double mean_kl = 0, kl_stderr = 0, median_kl = 0, p99_kl = 0, max_kl = 0;
  double same_top = 0, same_top_stderr = 0;  // fraction of positions whose argmax agrees
  double rms_dp = 0;                         // sqrt(mean((p_model(token) - p_base(token))^2))
  std::vector<ScoredToken> worst;            // largest KL first
};

// Scores `ids` with `model` (and `base` when not null; both must have the same vocabulary). Throws
// InputError when the ids are too few for one window or the options are out of range.
PerplexityReport measure_perplexity(const Model& model, const Model* base, const std::vector<int>& ids,
                                    const PerplexityOptions& options);

}  // namespace k2
