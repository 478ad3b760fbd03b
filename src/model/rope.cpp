// YaRN as in DeepSeek-V3 inference/model.py precompute_freqs_cis and HF _compute_yarn_parameters
// (identical formulas, spec §4.2); rotation by mx::fast::rope with traditional=true (spec §4.1).
#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

double correction_dim(int dims, double base, int original_max, double rotations) {
  return dims * std::log(original_max / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

}  // namespace

std::pair<int, int> yarn_correction_range(int dims, double base, const YarnScaling& y) {
  const int low = static_cast<int>(std::floor(correction_dim(dims, base, y.original_max_position_embeddings, y.beta_fast)));
  const int high = static_cast<int>(std::ceil(correction_dim(dims, base, y.original_max_position_embeddings, y.beta_slow)));
  return {std::max(low, 0), std::min(high, dims - 1)};
}

std::vector<double> plain_inv_freq(int dims, double base) {
  std::vector<double> f(dims / 2);
  for (int i = 0; i < dims / 2; ++i) f[i] = std::pow(base, -2.0 * i / dims);
  return f;
}

std::vector<double> yarn_inv_freq(int dims, double base, const YarnScaling& y) {
  auto [low, high] = yarn_correction_range(dims, base, y);
  double lo = low, hi = high;
  if (lo == hi) hi += 0.001;  // avoid a zero-width ramp (same guard in all references)
  std::vector<double> extra = plain_inv_freq(dims, base);
  std::vector<double> f(dims / 2);
  for (int i = 0; i < dims / 2; ++i) {
    const double ramp = std::clamp((i - lo) / (hi - lo), 0.0, 1.0);
    const double inter = extra[i] / y.factor;
    f[i] = extra[i] * (1.0 - ramp) + inter * ramp;
  }
  return f;
}

Rope::Rope(const ModelConfig& c) : dims_(c.qk_rope_head_dim), periods_(mx::array(0.0f)) {
  const std::vector<double> inv = c.rope_scaling ? yarn_inv_freq(dims_, c.rope_theta, *c.rope_scaling)
                                                 : plain_inv_freq(dims_, c.rope_theta);
  std::vector<float> periods(inv.size());
  for (size_t i = 0; i < inv.size(); ++i) periods[i] = static_cast<float>(1.0 / inv[i]);
  periods_ = mx::array(periods.data(), mx::Shape{static_cast<int>(periods.size())}, mx::float32);
  if (c.rope_scaling)
    input_scale_ = static_cast<float>(yarn_mscale(c.rope_scaling->factor, c.rope_scaling->mscale) /
                                      yarn_mscale(c.rope_scaling->factor, c.rope_scaling->mscale_all_dim));
}

mx::array Rope::apply(const mx::array& x, int offset) const {
  // mscale ratio is 1.0 for every published config; only scale when it is not (spec §4.2).
  const mx::array in = input_scale_ != 1.0f ? mx::multiply(x, mx::array(input_scale_, x.dtype())) : x;
  return mx::fast::rope(in, dims_, /*traditional=*/true, std::nullopt, 1.0f, offset, periods_);
}

}  // namespace k2
