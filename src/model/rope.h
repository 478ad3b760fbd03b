// Rotary position embedding for the 64-dim (qk_rope_head_dim) part of queries and keys: YaRN
// frequency tables (spec §4.2) and the interleaved-pair ("traditional") rotation (spec §4.1).
#pragma once

#include <optional>
#include <vector>

#include "mlx/array.h"
#include "model/config.h"

namespace k2 {

// Angular frequency per rotated pair i = 0..dims/2-1 (inv_freq in HF/DS-ref terms), computed in double.
std::vector<double> yarn_inv_freq(int dims, double base, const YarnScaling& y);
std::vector<double> plain_inv_freq(int dims, double base);

// YaRN's correction range [low, high] in pair indices (spec §4.2: K2 gives 19/20 at d = 64).
std::pair<int, int> yarn_correction_range(int dims, double base, const YarnScaling& y);

class Rope {
 public:
  explicit Rope(const ModelConfig& c);
  // x [B, heads, L, dims] at absolute positions offset..offset+L-1.
  mlx::core::array apply(const mlx::core::array& x, int offset) const;

 private:
  int dims_;
  float input_scale_ = 1.0f;   // yarn mscale/mscale_all_dim ratio (1 for every known config)
  mlx::core::array periods_;   // [dims/2] float32: 1/inv_freq, the form mx::fast::rope wants
};

}  // namespace k2
