// Sequence bookkeeping: stop rules in the order mlx-lm's generate loop applies them (stop id first, then the
// caller's cancellation, then the limit), held-id accounting for prompt reuse, and timings.
#include "engine/sequence.h"

#include <algorithm>

namespace k2 {

namespace {
double seconds_between(Sequence::Clock::time_point a, Sequence::Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

Sequence::Sequence(int id, GenerationJob job, std::shared_ptr<JobHandle> handle, double queue_seconds)
    : id_(id), job_(std::move(job)), handle_(std::move(handle)), admitted_(Clock::now()) {
  result_.prompt_tokens = static_cast<int>(job_.prompt.size());
  result_.queue_seconds = queue_seconds;
  if (!job_.prompt.empty()) next_input_ = job_.prompt.back();
}

bool Sequence::accept(int id, const std::optional<TokenLogprobs>& logprobs) {
  if (result_.tokens.empty() && result_.finish_reason.empty()) {
    first_token_ = Clock::now();
    result_.first_token_seconds = seconds_between(admitted_, first_token_);
  }
  if (std::find(job_.stop_tokens.begin(), job_.stop_tokens.end(), id) != job_.stop_tokens.end()) {
    result_.stop_token = id;
    finish("stop");
    return false;
  }
  result_.tokens.push_back(id);
  if (logprobs && job_.on_logprobs && !handle_->cancelled()) job_.on_logprobs(*logprobs);
  if (handle_->cancelled() || (job_.on_token && !job_.on_token(id))) {
    finish("cancelled");
    return false;
  }
  if (static_cast<int>(result_.tokens.size()) >= job_.max_tokens) {
    finish("length");
    return false;
  }
  next_input_ = id;
  return true;
}

std::vector<int> Sequence::held(int length) const {
  std::vector<int> ids = job_.prompt;
  ids.insert(ids.end(), result_.tokens.begin(), result_.tokens.begin() + fed_generated_);
  ids.resize(std::min(ids.size(), static_cast<size_t>(std::max(length, 0))));
  return ids;
}

int Sequence::last_unfed() const {
  return static_cast<int>(result_.tokens.size()) > fed_generated_ ? result_.tokens.back() : -1;
}

void Sequence::done() {
  if (reported_) return;
  reported_ = true;
  if (!result_.tokens.empty() || result_.stop_token >= 0)
    result_.decode_seconds = seconds_between(first_token_, Clock::now());
  if (job_.on_done) {
    try {
      job_.on_done(result_);
    } catch (...) {
      // A failing callback must not take the engine down; the caller owns its own errors.
    }
  }
}

}  // namespace k2
