// One sequence in the generation loop: its job, how far its prompt is prefilled, what it feeds next, and the
// stop rules. accept() is the one place that decides, for every caller (CLI, server, pipeline), whether a
// sampled id ends the sequence: a stop id (not emitted), cancellation, or the token limit.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "engine/worker.h"

namespace k2 {

class Sequence {
 public:
  using Clock = std::chrono::steady_clock;
  Sequence(int id, GenerationJob job, std::shared_ptr<JobHandle> handle, double queue_seconds);

  int id() const { return id_; }
  const std::vector<int>& prompt() const { return job_.prompt; }
  const GenerationJob& job() const { return job_; }
  bool finished() const { return !result_.finish_reason.empty() || result_.error; }
  bool cancelled() const { return handle_->cancelled(); }

  // Prefill: prompt tokens [0, prefilled()) are in the cache; every prompt token but the last is prefilled,
  // the last runs as the first decode row (as a lone decode step computes it).
  int prefilled() const { return prefilled_; }
  void set_prefilled(int n) { prefilled_ = n; }
  bool decoding() const { return !finished() && prefilled_ + 1 >= static_cast<int>(job_.prompt.size()); }
  int next_input() const { return next_input_; }  // the id the next decode row feeds
  void fed() { if (!result_.tokens.empty()) ++fed_generated_; }  // the decode row of next_input() ran

  // Applies the stop rules to the id sampled after next_input(); returns true while the sequence goes on.
  // `logprobs` (with sampling.logprobs >= 0) go to on_logprobs before on_token, for emitted ids only.
  bool accept(int id, const std::optional<TokenLogprobs>& logprobs = std::nullopt);
  void finish(const char* reason) { if (!finished()) result_.finish_reason = reason; }
  void fail(std::exception_ptr error) { if (!finished()) result_.error = error; }

  // The ids a cache of `length` positions holds for this sequence: the prompt, then the generated ids fed back.
  std::vector<int> held(int length) const;
  // The last emitted id that was never fed back (-1: none).
  int last_unfed() const;
  JobResult& result() { return result_; }
  // Completes the timings and calls on_done (once).
  void done();

 private:
  int id_;
  GenerationJob job_;
  std::shared_ptr<JobHandle> handle_;
  JobResult result_;
  Clock::time_point admitted_, first_token_;
  int prefilled_ = 0;
  int next_input_ = 0;
  int fed_generated_ = 0;  // generated ids that went back through the model
  bool reported_ = false;
};

}  // namespace k2
