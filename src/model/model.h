// The model as pure computation over a layer range [first, last): embed ids, run the range on a
// hidden state with a KV cache, and turn hidden states into logits. A pipeline stage is a Model
// whose range is a slice of the layers; running [0,k) then [k,n) equals running [0,n).
// No file I/O beyond construction from a checkpoint, no sampling, no networking.
#pragma once

#include <memory>
#include <vector>

#include "io/checkpoint.h"
#include "mlx/array.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/rope.h"
#include "model/weights.h"

namespace k2 {

class Model {
 public:
  Model(ModelConfig config, ModelWeights weights);
  // Loads config.json from `dir` and the weights of the range in `options`.
  static Model load(const std::filesystem::path& dir, const LoadOptions& options);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  int first_layer() const { return weights_.first_layer; }
  int last_layer() const { return weights_.last_layer; }
  bool has_embedding() const { return weights_.embed_tokens.has_value(); }
  bool has_head() const { return weights_.lm_head.has_value(); }
  mlx::core::Dtype dtype() const { return dtype_; }

  KvCache make_cache() const { return KvCache(first_layer(), last_layer()); }

  mlx::core::array embed(const mlx::core::array& ids) const;                  // [B, L] -> [B, L, hidden]
  mlx::core::array run_layers(const mlx::core::array& h, KvCache& cache) const;  // [B, L, hidden]
  // One decode step of B independent sequences: h [B, 1, hidden], row b against caches[b].
  mlx::core::array run_layers(const mlx::core::array& h, const std::vector<KvCache*>& caches) const;
  mlx::core::array head(const mlx::core::array& h) const;                     // [B, L, hidden] -> [B, L, vocab]

 private:
  template <class Attend>
  mlx::core::array layers(const mlx::core::array& h, Attend&& attend) const;

  ModelConfig config_;
  ModelWeights weights_;
  Rope rope_;
  mlx::core::Dtype dtype_;
};

}  // namespace k2
