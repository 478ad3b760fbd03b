// Sampling filters in the order HF's generation and mlx-lm apply them: repetition penalty, then
// temperature, then top-k / top-p / min-p truncation, then a categorical draw.
#include "engine/sampler.h"

#include <algorithm>
#include <array>
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

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), key_(mx::random::key(params_.seed)) {
  params_.validate();
  constrained_ = !params_.forced_choices.empty();
}

namespace {

// lazily: (log-prob of token, top-n ids, top-n log-probs), from float32 logits [vocab].
std::array<mx::array, 3> logprob_arrays(const mx::array& logits, const mx::array& token, int top_n) {
  mx::array lp = mx::subtract(logits, mx::logsumexp(logits, 0, true));  // log-softmax in float32
  mx::array chosen = mx::take(lp, mx::astype(token, mx::int32), 0);
  const int n = std::min(top_n, static_cast<int>(lp.shape(0)));
  mx::array ids = n > 0 ? mx::astype(mx::slice(mx::argsort(mx::negative(lp), 0), {0}, {n}), mx::int32)
                        : mx::zeros({0}, mx::int32);
  mx::array vals = n > 0 ? mx::take(lp, ids, 0) : mx::zeros({0}, mx::float32);
  return {chosen, ids, vals};
}

TokenLogprobs to_host(int token, mx::array& chosen, mx::array& ids, mx::array& vals) {
  mx::eval({chosen, ids, vals});
  TokenLogprobs out;
  out.token = token;
  out.logprob = chosen.item<float>();
  const int32_t* id = ids.data<int32_t>();
  const float* v = vals.data<float>();
  for (size_t i = 0; i < ids.size(); ++i) out.top.emplace_back(id[i], v[i]);
  return out;
}

}  // namespace

TokenLogprobs token_logprobs(const mx::array& logits, int token, int top_n) {
  auto [chosen, ids, vals] = logprob_arrays(mx::astype(mx::flatten(logits), mx::float32), mx::array(token), top_n);
  return to_host(token, chosen, ids, vals);
}

std::vector<TokenLogprobs> sequence_logprobs(const mx::array& logits_in, const std::vector<int>& tokens, int top_n) {
  const int n = static_cast<int>(tokens.size());
  if (logits_in.ndim() != 2 || logits_in.shape(0) != n)
    throw Error(fmt::format("sequence_logprobs: logits of shape [{}, vocab] expected for {} tokens", n, n));
  mx::array logits = mx::astype(logits_in, mx::float32);                     // [n, V]
  mx::array lp = mx::subtract(logits, mx::logsumexp(logits, 1, true));       // [n, V]
  mx::array idx(tokens.data(), mx::Shape{n, 1}, mx::int32);
  mx::array chosen = mx::reshape(mx::take_along_axis(lp, idx, 1), {n});      // [n]
  const int k = std::min(top_n, static_cast<int>(lp.shape(1)));
  mx::array ids = k > 0 ? mx::astype(mx::slice(mx::argsort(mx::negative(lp), 1), {0, 0}, {n, k}), mx::int32)
                        : mx::zeros({n, 0}, mx::int32);                      // [n, k]
  mx::array vals = mx::take_along_axis(lp, ids, 1);                          // [n, k]
  mx::eval({chosen, ids, vals});
  std::vector<TokenLogprobs> out(n);
  const float* c = chosen.data<float>();
  const int32_t* id = ids.data<int32_t>();
  const float* v = vals.data<float>();
  for (int i = 0; i < n; ++i) {
    out[i].token = tokens[i];
    out[i].logprob = c[i];
    for (int j = 0; j < k; ++j) out[i].top.emplace_back(id[i * k + j], v[i * k + j]);
  }
  return out;
}

TokenLogprobs Sampler::take_logprobs() {
  if (pending_.empty()) throw Error("no drawn token has log-probabilities left to take");
  Pending p = std::move(pending_.front());
  pending_.pop_front();
  mx::eval(p.token);
  const int token = static_cast<int>(p.token.item<uint32_t>());
  return to_host(token, p.logprob, p.top_ids, p.top_logprobs);
}

// Masks every token that does not continue one of the forced choices from what was drawn so far. The
// drawn token must be known on the host for the next step, so a constrained step is evaluated at once
// (only the few tokens of a forced opener pay for it).
mx::array Sampler::constrain(const mx::array& logits) {
  std::vector<int> allowed;
  for (const auto& c : params_.forced_choices)
    if (c.size() > drawn_.size() && std::equal(drawn_.begin(), drawn_.end(), c.begin())) allowed.push_back(c[drawn_.size()]);
  if (allowed.empty()) return logits;
  const int V = logits.shape(0);
  std::vector<int> ids;
  for (int id : allowed)
    if (id >= 0 && id < V) ids.push_back(id);
  if (ids.empty()) return logits;
  mx::array idx(ids.data(), mx::Shape{static_cast<int>(ids.size())}, mx::int32);
  return mx::put_along_axis(mx::full({V}, -std::numeric_limits<float>::infinity(), mx::float32), idx,
                            mx::take(logits, idx, 0), 0);
}

mx::array Sampler::sample(const mx::array& logits_in, const std::optional<mx::array>& recent) {
  const mx::array raw = mx::astype(mx::flatten(logits_in), mx::float32);
  mx::array token = draw(raw, recent);
  if (constrained_) {
    drawn_.push_back(static_cast<int>(token.item<uint32_t>()));
    bool open = false;
    for (const auto& c : params_.forced_choices)
      open = open || (c.size() > drawn_.size() && std::equal(drawn_.begin(), drawn_.end(), c.begin()));
    constrained_ = open;
  }
  if (params_.logprobs >= 0) {
    auto [chosen, ids, vals] = logprob_arrays(raw, token, params_.logprobs);
    pending_.push_back(Pending{token, chosen, ids, vals});
  }
  return token;
}

mx::array Sampler::draw(const mx::array& raw, const std::optional<mx::array>& recent) {
  mx::array logits = constrained_ ? constrain(raw) : raw;
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

RecentTokens::RecentTokens(const SamplingParams& p, const std::vector<int>& prompt)
    : context_(p.repetition_penalty != 1.0f ? p.repetition_context : 0) {
  for (size_t i = prompt.size() > static_cast<size_t>(context_) ? prompt.size() - context_ : 0; i < prompt.size(); ++i)
    ids_.push_back(prompt[i]);
}

void RecentTokens::push(int id) {
  if (context_ == 0) return;
  ids_.push_back(id);
  while (static_cast<int>(ids_.size()) > context_) ids_.pop_front();
}

std::optional<mx::array> RecentTokens::array() const {
  if (context_ == 0 || ids_.empty()) return std::nullopt;
  std::vector<int> v(ids_.begin(), ids_.end());
  return mx::array(v.data(), mx::Shape{static_cast<int>(v.size())}, mx::int32);
}

mx::array SequenceSampler::next(const mx::array& logits, int fed) {
  if (!first_) recent_.push(fed);
  first_ = false;
  return sampler_.sample(logits, recent_.array());
}

}  // namespace k2
