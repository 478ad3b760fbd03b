// The single generation worker: one thread owns the model and runs queued jobs in order (bounded queue,
// cancellation); a JobRunner does the model work (locally with prompt reuse through PromptCache, or as
// rank 0 of a pipeline). Jobs are token ids in, token ids out; text and HTTP live in the caller.
// TokenGenerator is the interface the server depends on (a fake stands in for tests).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/generate.h"
#include "engine/prompt_cache.h"
#include "engine/sampler.h"

namespace k2 {

// The queue is full: try again later (HTTP 503 with Retry-After).
class BusyError : public Error {
 public:
  using Error::Error;
};

struct JobResult {
  std::vector<int> tokens;       // generated ids (no stop token)
  std::string finish_reason;     // "stop", "length" or "cancelled"
  int prompt_tokens = 0;
  int cached_tokens = 0;         // prompt tokens whose KV came from the prompt cache
  double queue_seconds = 0.0;    // waiting for the worker
  double first_token_seconds = 0.0;  // from the start of the job to the first token
  double decode_seconds = 0.0;   // from the first token to the end
  std::exception_ptr error;      // set when the job failed (InputError = the request's fault)
  // With GenerationJob::prompt_logprobs: entry i scores prompt token i + 1 given the tokens before it.
  std::vector<TokenLogprobs> prompt_logprobs;
};

struct GenerationJob {
  std::vector<int> prompt;
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<int> stop_tokens;
  bool prompt_logprobs = false;  // also score the prompt's tokens (top sampling.logprobs alternatives each)
  std::function<void(const TokenLogprobs&)> on_logprobs;  // worker thread, before on_token, with sampling.logprobs >= 0
  std::function<bool(int)> on_token;              // worker thread; false cancels
  std::function<void(const JobResult&)> on_done;  // worker thread; called exactly once per accepted job
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
  bool busy = false;
  size_t queue_capacity = 0;
  size_t prompt_cache_entries = 0;
  size_t prompt_cache_bytes = 0;
};

class TokenGenerator {
 public:
  virtual ~TokenGenerator() = default;
  // Queues a job; throws BusyError when the queue is full. on_done is not called for a rejected job.
  virtual std::shared_ptr<JobHandle> submit(GenerationJob job) = 0;
  virtual WorkerStatus status() const = 0;
};

struct WorkerOptions {
  size_t max_queue = 16;  // jobs waiting (not counting the running one)
  PrefillChunking prefill;  // default: chunks sized to memory
  PromptCacheOptions prompt_cache;
};

// The model side of one job, called on the worker thread only. run() fills tokens, finish_reason,
// cached_tokens, first_token_seconds and decode_seconds (measured from `start`), polls
// handle.cancelled(), and throws on failure (InputError = the request's fault).
class JobRunner {
 public:
  virtual ~JobRunner() = default;
  virtual void run(GenerationJob& job, const JobHandle& handle, JobResult& result) = 0;
  virtual size_t cache_entries() const = 0;
  virtual size_t cache_bytes() const = 0;
  virtual void finish() {}  // after the last job, before the worker thread ends
};

// Runs jobs on a whole model in this process, reusing prompts through a PromptCache.
class LocalJobRunner : public JobRunner {
 public:
  LocalJobRunner(const Model& model, PrefillChunking prefill, PromptCacheOptions prompt_cache);
  void run(GenerationJob& job, const JobHandle& handle, JobResult& result) override;
  size_t cache_entries() const override { return cache_.size(); }
  size_t cache_bytes() const override { return cache_.bytes(); }

 private:
  const Model& model_;
  PrefillChunking prefill_;
  PromptCache cache_;
};


class GenerationWorker : public TokenGenerator {
 public:
  GenerationWorker(const Model& model, WorkerOptions options);  // a LocalJobRunner
  GenerationWorker(std::unique_ptr<JobRunner> runner, WorkerOptions options);
  ~GenerationWorker() override;  // cancels queued jobs (their on_done reports "cancelled") and joins

  std::shared_ptr<JobHandle> submit(GenerationJob job) override;
  WorkerStatus status() const override;

 private:
  struct Queued {
    GenerationJob job;
    std::shared_ptr<JobHandle> handle;
    std::chrono::steady_clock::time_point queued_at;
  };
  void loop();

  std::unique_ptr<JobRunner> runner_;  // touched only by the worker thread
  WorkerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  size_t cache_entries_ = 0, cache_bytes_ = 0;  // copies for status(), updated after each job
  std::thread thread_;
};

}  // namespace k2
