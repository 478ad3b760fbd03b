// Token selection from logits: greedy, temperature, top-k, top-p, min-p, repetition penalty, with a
// seeded random stream so a fixed seed gives a fixed continuation. Runs as MLX ops (no host copy
// of the vocabulary-sized logits).
#pragma once

#include <cstdint>
#include <optional>

#include "mlx/array.h"

namespace k2 {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy (argmax)
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // 1 = off (HF/CTRL rule: positive logits / p, negative · p)
  int repetition_context = 64;      // how many recent tokens the penalty looks at
  uint64_t seed = 0;

  // Throws InputError naming the parameter when a value is out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params);
  // logits [vocab] (any float dtype); recent [n] int32 token ids for the repetition penalty (may be
  // empty). Returns a scalar uint32 array (lazy).
  mlx::core::array sample(const mlx::core::array& logits, const std::optional<mlx::core::array>& recent);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  mlx::core::array key_;
};

// The filters alone, on float32 logits [vocab] (exposed for unit tests). Filtered-out entries become -inf.
mlx::core::array apply_top_k(const mlx::core::array& logits, int k);
mlx::core::array apply_top_p(const mlx::core::array& logits, float p);
mlx::core::array apply_min_p(const mlx::core::array& logits, float min_p);
mlx::core::array apply_repetition_penalty(const mlx::core::array& logits, const mlx::core::array& recent,
                                          float penalty);

}  // namespace k2
