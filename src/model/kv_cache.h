// The latent KV cache of Multi-head Latent Attention: per layer only the normalised kv_lora_rank
// latent and the rotated qk_rope_head_dim key are kept (spec §3.3), grown in fixed steps.
// Belongs to a session, not to the model; holds any subset of layers (a pipeline stage).
#pragma once

#include <cstddef>
#include <map>
#include <optional>

#include "mlx/array.h"
#include "model/config.h"

namespace k2 {

class LayerCache {
 public:
  // Appends latent [B, 1, L, kv_lora_rank] and k_pe [B, 1, L, qk_rope_head_dim] at position offset();
  // returns the views of all cached positions [B, 1, offset+L, ·].
  std::pair<mlx::core::array, mlx::core::array> update_and_fetch(const mlx::core::array& latent,
                                                                 const mlx::core::array& k_pe);
  int offset() const { return offset_; }
  // The next growth makes room for at least `positions` positions at once (a prefill of known length), so that
  // a long prompt allocates its cache once instead of copying it into a larger buffer chunk after chunk.
  void reserve(int positions) { reserve_ = positions; }
  void trim_to(int length);  // forget positions >= length (prompt reuse / rollback)
  size_t nbytes() const;     // bytes allocated
  std::vector<mlx::core::array> state() const;  // arrays to eval after a prefill chunk

  static constexpr int kStep = 256;  // growth step in positions (as mlx-lm's KVCache)

 private:
  std::optional<mlx::core::array> latent_;  // [B, 1, capacity, kv_lora_rank]
  std::optional<mlx::core::array> k_pe_;    // [B, 1, capacity, qk_rope_head_dim]
  int offset_ = 0;
  int reserve_ = 0;
};

// Cache for the layers [first, last) of one model stage.
class KvCache {
 public:
  KvCache(int first_layer, int last_layer);
  LayerCache& layer(int index);
  int offset() const;  // positions cached (same for every layer)
  void reserve(int positions);  // LayerCache::reserve for every layer
  void trim_to(int length);
  size_t nbytes() const;
  std::vector<mlx::core::array> state() const;
  int first_layer() const { return first_; }
  int last_layer() const { return last_; }

 private:
  int first_, last_;
  std::vector<LayerCache> layers_;
};

// Bytes one cached position costs across `layers` layers at `dtype_bytes` per element (spec §3.3).
inline size_t kv_bytes_per_token(const ModelConfig& c, int layers, size_t dtype_bytes) {
  return static_cast<size_t>(c.kv_lora_rank + c.qk_rope_head_dim) * dtype_bytes * layers;
}

}  // namespace k2
