// A conversation's state on one model: the tokens so far and their KV cache. prefill() feeds
// prompt tokens (in chunks), decode_step() feeds one token; both return next-token logits.
// The cache belongs here, not to the model, so several sessions can share one loaded model.
#pragma once

#include <optional>
#include <vector>

#include "mlx/array.h"
#include "engine/prefill_chunk.h"
#include "model/model.h"

namespace k2 {

class Session {
 public:
  explicit Session(const Model& model);

  // Runs `ids` through the model in chunks (sized by prefill_chunk_size), appending to the cache.
  // Returns logits [vocab] for the last position (lazy; the last token runs as a decode step), or
  // [n, vocab] for every new position when all_positions is set. Evaluates the cache after each
  // chunk to bound memory. Throws InputError when the prefill cannot fit in memory.
  mlx::core::array prefill(const std::vector<int>& ids, const PrefillChunking& chunking = {},
                           bool all_positions = false);

  // Runs `ids` through the model in chunks, only appending them to the cache (no logits: MLX skips what no
  // cache entry depends on). prefill() is extend() of all but the last token, then a decode step; a caller
  // that cuts a prompt itself (the serving worker) uses extend() so that the cut stays the same.
  void extend(const std::vector<int>& ids, const PrefillChunking& chunking = {});

  // One token (possibly still being computed: a lazy scalar) -> logits [vocab] (lazy).
  mlx::core::array decode_step(const mlx::core::array& token);
  mlx::core::array decode_step(int token);

  int length() const { return cache_.offset(); }
  const KvCache& cache() const { return cache_; }
  KvCache& cache() { return cache_; }
  void trim_to(int length) { cache_.trim_to(length); }
  const Model& model() const { return model_; }

 private:
  mlx::core::array forward(const mlx::core::array& ids);  // [1, L] -> logits [1, L, vocab]
  void check_capacity(size_t extra) const;
  void check_ids(const std::vector<int>& ids) const;  // non-empty, in the vocabulary, within the context
  int chunk_for(size_t new_tokens, const PrefillChunking& chunking) const;  // resolved, memory checked
  void fill(const int* ids, int n, int step);  // the cache-only chunk loop

  const Model& model_;
  KvCache cache_;
};

}  // namespace k2
