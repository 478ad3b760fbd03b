// Generation loop modelled on mlx-lm generate_step: the next token's graph is built and started with
// async_eval before the current token is read back, so host work overlaps device work.
#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

GenerationStats generate(Session& session, const std::vector<int>& prompt, Sampler& sampler,
                         const GenerateOptions& options, const std::function<bool(int)>& on_token) {
  if (options.max_tokens < 0) throw InputError(fmt::format("max_tokens must be >= 0, got {}", options.max_tokens));
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int>(prompt.size());
  mx::reset_peak_memory();
  const auto start = std::chrono::steady_clock::now();
  if (options.max_tokens == 0) {
    stats.finish_reason = "length";
    return stats;
  }

  // Recent tokens for the repetition penalty (prompt tail, then generated ids).
  const int context = sampler.params().repetition_penalty != 1.0f ? sampler.params().repetition_context : 0;
  std::deque<int> recent;
  for (const std::vector<int>* ids : {&options.history, &prompt})
    for (int id : *ids) {
      if (context == 0) break;
      recent.push_back(id);
      if (static_cast<int>(recent.size()) > context) recent.pop_front();
    }
  auto recent_array = [&]() -> std::optional<mx::array> {
    if (context == 0 || recent.empty()) return std::nullopt;
    std::vector<int> v(recent.begin(), recent.end());
    return mx::array(v.data(), mx::Shape{static_cast<int>(v.size())}, mx::int32);
  };

  mx::array token = sampler.sample(session.prefill(prompt, options.prefill), recent_array());
  mx::async_eval(token);
  std::chrono::steady_clock::time_point first_token_time;
  for (int n = 0; n < options.max_tokens; ++n) {
    std::optional<mx::array> next;
    // Without a repetition penalty the next step does not need this token on the host, so start it now.
    const bool last = n + 1 == options.max_tokens;
    if (!last && context == 0) {
      next = sampler.sample(session.decode_step(token), std::nullopt);
      mx::async_eval(*next);
    }
    const int id = static_cast<int>(token.item<uint32_t>());
    if (n == 0) {
      stats.prefill_seconds = seconds_since(start);
      first_token_time = std::chrono::steady_clock::now();
    }
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), id) != options.stop_tokens.end()) {
      stats.finish_reason = "stop";
      stats.stop_token = id;
      break;
    }
    stats.tokens.push_back(id);
    if (on_token && !on_token(id)) {
      stats.finish_reason = "cancelled";
      break;
    }
    if (last) {
      stats.finish_reason = "length";
      break;
    }
    if (!next) {
      recent.push_back(id);
      while (static_cast<int>(recent.size()) > context) recent.pop_front();
      next = sampler.sample(session.decode_step(id), recent_array());
      mx::async_eval(*next);
    }
    token = *next;
    if ((n + 1) % 256 == 0) mx::clear_cache();
  }
  if (!stats.tokens.empty()) stats.decode_seconds = seconds_since(first_token_time);
  stats.peak_memory = mx::get_peak_memory();
  return stats;
}

}  // namespace k2
