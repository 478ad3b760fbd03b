// Sampling filters in the order HF's generation and mlx-lm apply them: repetition penalty, then
// temperature, then top-k / top-p / min-p truncation, then a categorical draw.
#include "engine/sampler.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {
mx::array neg_inf() { return mx::array(-std::numeric_limits<float>::infinity(), mx::float32); }
}  // namespace

void SamplingParams::validate() const {
  auto bad = [](const std::string& what) { return InputError(what); };
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    throw bad(fmt::format("temperature must be >= 0, got {}", temperature));
  if (top_k < 0) throw bad(fmt::format("top_k must be >= 0, got {}", top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) throw bad(fmt::format("top_p must be in (0, 1], got {}", top_p));
  if (!(min_p >= 0.0f && min_p < 1.0f)) throw bad(fmt::format("min_p must be in [0, 1), got {}", min_p));
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    throw bad(fmt::format("repetition_penalty must be > 0, got {}", repetition_penalty));
  if (repetition_context < 0) throw bad(fmt::format("repetition context must be >= 0, got {}", repetition_context));
}

mx::array apply_top_k(const mx::array& logits, int k) {
  const int V = logits.shape(-1);
  if (k <= 0 || k >= V) return logits;
  mx::array top = mx::slice(mx::argpartition(mx::negative(logits), k - 1, -1), {0}, {k});
  mx::array kept = mx::take(logits, top, 0);
  return mx::put_along_axis(mx::full({V}, -std::numeric_limits<float>::infinity(), mx::float32), top, kept, 0);
}

mx::array apply_top_p(const mx::array& logits, float p) {
  if (p >= 1.0f) return logits;
  mx::array order = mx::argsort(mx::negative(logits), -1);           // descending
  mx::array probs = mx::take(mx::softmax(logits, -1, true), order, 0);
  mx::array before = mx::subtract(mx::cumsum(probs, 0), probs);      // mass strictly before each token
  mx::array keep_sorted = mx::less(before, mx::array(p, mx::float32));  // always keeps the top token
  mx::array keep = mx::put_along_axis(mx::zeros(logits.shape(), mx::bool_), order, keep_sorted, 0);
  return mx::where(keep, logits, neg_inf());
}

mx::array apply_min_p(const mx::array& logits, float min_p) {
  if (min_p <= 0.0f) return logits;
  // p_i >= min_p · p_max  <=>  logit_i >= logit_max + log(min_p)
  mx::array threshold = mx::add(mx::max(logits, -1, true), mx::array(std::log(min_p), mx::float32));
  return mx::where(mx::greater_equal(logits, threshold), logits, neg_inf());
}

mx::array apply_repetition_penalty(const mx::array& logits, const mx::array& recent, float penalty) {
  if (penalty == 1.0f || recent.size() == 0) return logits;
  mx::array ids = mx::astype(recent, mx::int32);
  mx::array seen = mx::take(logits, ids, 0);
  mx::array p = mx::array(penalty, mx::float32);
  mx::array penalised = mx::where(mx::greater(seen, mx::array(0.0f)), mx::divide(seen, p), mx::multiply(seen, p));
  return mx::put_along_axis(logits, ids, penalised, 0);
}

Sampler::Sampler(SamplingParams params) : params_(params), key_(mx::random::key(params.seed)) { params_.validate(); }

mx::array Sampler::sample(const mx::array& logits_in, const std::optional<mx::array>& recent) {
  mx::array logits = mx::astype(mx::flatten(logits_in), mx::float32);
  if (recent && params_.repetition_penalty != 1.0f)
    logits = apply_repetition_penalty(logits, *recent, params_.repetition_penalty);
  if (params_.temperature == 0.0f) return mx::astype(mx::argmax(logits, 0), mx::uint32);
  logits = mx::multiply(logits, mx::array(1.0f / params_.temperature, mx::float32));
  logits = apply_top_k(logits, params_.top_k);
  logits = apply_top_p(logits, params_.top_p);
  logits = apply_min_p(logits, params_.min_p);
  auto keys = mx::random::split(key_);
  key_ = keys.first;
  return mx::astype(mx::random::categorical(logits, 0, keys.second), mx::uint32);
}

}  // namespace k2
