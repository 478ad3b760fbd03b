// GenerationFeed: poll, coalesce, probe the client, drain after a cancel.
#include "server/generation_feed.h"

#include <thread>

namespace k2 {
namespace {
using Clock = std::chrono::steady_clock;
constexpr auto kPoll = std::chrono::milliseconds(50);
constexpr auto kStreamInterval = std::chrono::milliseconds(20);
constexpr auto kProbeInterval = std::chrono::milliseconds(200);

bool has_text(const OutputDelta& d) { return !d.reasoning.empty() || !d.content.empty(); }

void merge(Progress& into, Progress&& more) {
  into.delta.append(std::move(more.delta));
  into.logprobs.insert(into.logprobs.end(), more.logprobs.begin(), more.logprobs.end());
  into.done = more.done;
  into.error = more.error;
  into.finish_reason = more.finish_reason;
}
}  // namespace

GenerationFeed::GenerationFeed(std::shared_ptr<RunningRequest> running, std::function<bool()> client_gone)
    : running_(std::move(running)), client_gone_(std::move(client_gone)), start_(Clock::now()), last_probe_(start_) {}

bool GenerationFeed::gone() {
  if (Clock::now() - last_probe_ <= kProbeInterval) return false;
  last_probe_ = Clock::now();
  return client_gone_ && client_gone_();
}

bool GenerationFeed::next(Progress& piece) {
  while (true) {
    if (gone()) return false;
    piece = running_->poll(kPoll);
    if (!piece.delta.empty() && !piece.done && first_byte_ != 0.0) {
      std::this_thread::sleep_for(kStreamInterval);
      merge(piece, running_->poll(std::chrono::milliseconds(0)));
    }
    if (first_byte_ == 0.0 && (has_text(piece.delta) || !piece.logprobs.empty() || piece.done))
      first_byte_ = std::chrono::duration<double>(Clock::now() - start_).count();
    if (!piece.delta.empty() || !piece.logprobs.empty() || piece.done) return true;
  }
}

bool GenerationFeed::all(Progress& whole) {
  whole = Progress{};
  while (!whole.done) {
    Progress p = running_->poll(kPoll);
    if (first_byte_ == 0.0 && (has_text(p.delta) || p.done))
      first_byte_ = std::chrono::duration<double>(Clock::now() - start_).count();
    merge(whole, std::move(p));
    if (!whole.done && gone()) return false;
  }
  return true;
}

void GenerationFeed::abandon() {
  if (abandoned_) return;
  abandoned_ = true;
  running_->cancel();
  while (!running_->poll(kPoll).done) {}
}

}  // namespace k2
