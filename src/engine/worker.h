// What callers of the engine see: a generation job (token ids in, ids out through callbacks), its one result
// type, the cancellation handle, and the TokenGenerator interface the server depends on (a fake stands in for
// tests). GenerationWorker is the engine thread that owns the model: it queues jobs (bounded, BusyError beyond)
// and admits up to `parallel` of them into the running batch of the one generation loop (engine/scheduler.h).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/model_step.h"
#include "engine/sampler.h"

namespace k2 {

// The queue is full: try again later (HTTP 503 with Retry-After).
class BusyError : public Error {
 public:
  using Error::Error;
};

// The result of one sequence, whoever computed it (this process or a pipeline).
struct JobResult {
  std::vector<int> tokens;       // generated ids (no stop token)
  std::string finish_reason;     // "stop", "length" or "cancelled"
  int stop_token = -1;           // the stop id that ended generation (finish_reason "stop")
  int prompt_tokens = 0;
  int cached_tokens = 0;         // prompt tokens whose KV came from the prompt cache
  double queue_seconds = 0.0;    // waiting for a place in the running batch
  double first_token_seconds = 0.0;  // from admission to the first token
  double decode_seconds = 0.0;   // from the first token to the end
  std::exception_ptr error;      // set when the job failed (InputError = the request's fault)
  // With GenerationJob::prompt_logprobs: entry i scores prompt token i + 1 given the tokens before it.
  std::vector<TokenLogprobs> prompt_logprobs;

  double prefill_tps() const {
    return first_token_seconds > 0 ? (prompt_tokens - cached_tokens) / first_token_seconds : 0.0;
  }
  double decode_tps() const {
    return decode_seconds > 0 && tokens.size() > 1 ? (tokens.size() - 1) / decode_seconds : 0.0;
  }
};

struct GenerationJob {
  std::vector<int> prompt;
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<int> stop_tokens;                   // generation ends when one is sampled (it is not emitted)
  bool prompt_logprobs = false;  // also score the prompt's tokens (top sampling.logprobs alternatives each)
  std::function<void(const TokenLogprobs&)> on_logprobs;  // engine thread, before on_token, with sampling.logprobs >= 0
  std::function<bool(int)> on_token;              // engine thread; false cancels
  std::function<void(const JobResult&)> on_done;  // engine thread; called exactly once per accepted job
};

class JobHandle {
 public:
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  std::atomic<bool> cancelled_{false};
};

struct WorkerStatus {
  size_t queued = 0;
  bool busy = false;  // at least one sequence is running
  size_t queue_capacity = 0;
  size_t prompt_cache_entries = 0;
  size_t prompt_cache_bytes = 0;
  size_t running = 0;   // sequences in the running batch
  size_t parallel = 1;  // the most that run together
};

class TokenGenerator {
 public:
  virtual ~TokenGenerator() = default;
  // Queues a job; throws BusyError when the queue is full. on_done is not called for a rejected job.
  virtual std::shared_ptr<JobHandle> submit(GenerationJob job) = 0;
  virtual WorkerStatus status() const = 0;
};

struct WorkerOptions {
  size_t max_queue = 16;  // jobs waiting for a place in the batch (not counting the running ones)
  int parallel = 4;       // sequences decoded together
  int step_tokens = 0;    // tokens per step, decode rows and prefill together (0 = one prefill chunk per step)
};

class GenerationWorker : public TokenGenerator {
 public:
  GenerationWorker(std::unique_ptr<ModelStep> step, WorkerOptions options);
  ~GenerationWorker() override;  // cancels queued and running jobs (their on_done reports "cancelled") and joins

  std::shared_ptr<JobHandle> submit(GenerationJob job) override;
  WorkerStatus status() const override;

 private:
  struct Queued {
    GenerationJob job;
    std::shared_ptr<JobHandle> handle;
    std::chrono::steady_clock::time_point queued_at;
  };
  void loop();

  std::unique_ptr<ModelStep> step_;  // touched only by the worker thread
  WorkerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool stopping_ = false;
  size_t running_ = 0, cache_entries_ = 0, cache_bytes_ = 0;  // copies for status(), updated after each step
  std::thread thread_;
};

}  // namespace k2
