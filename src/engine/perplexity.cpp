// Perplexity and KL divergence over windows: each window is one all-positions prefill on a fresh Session (the
// same computation as `k2mlx logits --all-positions`), log-softmax in float32, per-token figures reduced on the
// host in double.
#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/session.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

// Log-probabilities [n, vocab] (float32) of the predictions for tokens [from, to) of the window: the logits of
// positions [from - 1, to - 1).
mx::array window_logprobs(const Model& model, const std::vector<int>& window, int from, const PrefillChunking& p) {
  Session session(model);
  mx::array logits = session.prefill(window, p, /*all_positions=*/true);  // [W, vocab]
  const int W = static_cast<int>(window.size()), V = logits.shape(1);
  logits = mx::astype(mx::slice(logits, {from - 1, 0}, {W - 1, V}), mx::float32);
  return mx::subtract(logits, mx::logsumexp(logits, -1, /*keepdims=*/true));
}

std::vector<float> to_floats(const mx::array& a) {
  mx::array f = mx::astype(a, mx::float32);
  mx::eval(f);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.size());
}

std::vector<int> to_ints(const mx::array& a) {
  mx::array i = mx::astype(a, mx::int32);
  mx::eval(i);
  return std::vector<int>(i.data<int>(), i.data<int>() + i.size());
}

// Mean and standard error of the mean.
std::pair<double, double> mean_stderr(const std::vector<double>& v) {
  const double n = static_cast<double>(v.size());
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = sum / n;
  if (v.size() < 2) return {mean, 0.0};
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return {mean, std::sqrt(ss / (n - 1) / n)};
}

double quantile(std::vector<double> v, double q) {  // nearest rank
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

double PerplexityReport::ppl() const { return std::exp(mean_nll); }
double PerplexityReport::ppl_stderr() const { return std::exp(mean_nll) * nll_stderr; }

PerplexityReport measure_perplexity(const Model& model, const Model* base, const std::vector<int>& ids,
                                    const PerplexityOptions& o) {
  if (o.window < 2) throw InputError(fmt::format("the window must hold at least 2 tokens, got {}", o.window));
  const int from = o.score_from < 0 ? std::max(1, o.window / 2) : o.score_from;
  if (from < 1 || from >= o.window)
    throw InputError(fmt::format("the first scored token of a window must be in [1, {}), got {}", o.window, from));
  if (o.max_windows < 0) throw InputError(fmt::format("the window count must be >= 0, got {}", o.max_windows));
  if (o.worst < 0) throw InputError(fmt::format("the number of worst positions must be >= 0, got {}", o.worst));
  const int vocab = model.config().vocab_size;
  if (base && base->config().vocab_size != vocab)
    throw InputError(fmt::format("the base model's vocabulary ({}) differs from the model's ({}): they cannot be "
                                 "compared token by token", base->config().vocab_size, vocab));
  int windows = static_cast<int>(ids.size()) / o.window;
  if (windows == 0)
    throw InputError(fmt::format("the text has {} tokens, fewer than one window of {}; use a smaller --window or a "
                                 "longer text", ids.size(), o.window));
  if (o.max_windows > 0) windows = std::min(windows, o.max_windows);

  PerplexityReport r;
  r.windows = windows;
  r.window = o.window;
  r.score_from = from;
  r.has_base = base != nullptr;
  std::vector<double> nll, base_nll, kl, same, dp2;
  for (int w = 0; w < windows; ++w) {
    const int start = w * o.window;
    const std::vector<int> window(ids.begin() + start, ids.begin() + start + o.window);
    const int n = o.window - from;
    mx::array targets = mx::reshape(mx::array(window.data() + from, mx::Shape{n}, mx::int32), {n, 1});
    mx::array lp = window_logprobs(model, window, from, o.prefill);  // [n, vocab]
    std::vector<float> token_lp = to_floats(mx::take_along_axis(lp, targets, 1));
    std::vector<int> top = to_ints(mx::argmax(lp, 1));
    std::vector<float> token_lp_base, kl_row;
    std::vector<int> top_base;
    if (base) {
      mx::array lpb = window_logprobs(*base, window, from, o.prefill);
      token_lp_base = to_floats(mx::take_along_axis(lpb, targets, 1));
      top_base = to_ints(mx::argmax(lpb, 1));
      // KL(base || model) = sum_v p_base(v) (log p_base(v) - log p_model(v)); exactly 0 for equal logits.
      kl_row = to_floats(mx::sum(mx::multiply(mx::exp(lpb), mx::subtract(lpb, lp)), 1));
    }
    for (int i = 0; i < n; ++i) {
      ScoredToken t;
      t.position = start + from + i;
      t.token = window[from + i];
      t.nll = -static_cast<double>(token_lp[i]);
      t.top = top[i];
      nll.push_back(t.nll);
      if (base) {
        t.base_nll = -static_cast<double>(token_lp_base[i]);
        t.base_top = top_base[i];
        t.kl = std::max(0.0, static_cast<double>(kl_row[i]));  // a true KL is >= 0; rounding can dip below
        base_nll.push_back(t.base_nll);
        kl.push_back(t.kl);
        same.push_back(t.top == t.base_top ? 1.0 : 0.0);
        const double dp = std::exp(-t.nll) - std::exp(-t.base_nll);
        dp2.push_back(dp * dp);
      }
      r.scored.push_back(t);
    }
  }
  std::tie(r.mean_nll, r.nll_stderr) = mean_stderr(nll);
  if (base) {
    std::tie(r.base_mean_nll, r.base_nll_stderr) = mean_stderr(base_nll);
    std::tie(r.mean_kl, r.kl_stderr) = mean_stderr(kl);
    r.median_kl = quantile(kl, 0.5);
    r.p99_kl = quantile(kl, 0.99);
    r.max_kl = *std::max_element(kl.begin(), kl.end());
    std::tie(r.same_top, r.same_top_stderr) = mean_stderr(same);
    r.rms_dp = std::sqrt(mean_stderr(dp2).first);
    r.worst = r.scored;
    std::stable_sort(r.worst.begin(), r.worst.end(), [](const ScoredToken& a, const ScoredToken& b) { return a.kl > b.kl; });
    r.worst.resize(std::min<size_t>(r.worst.size(), static_cast<size_t>(o.worst)));
  }
  return r;
}

}  // namespace k2
