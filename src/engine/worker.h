// The single generation worker: one thread owns the model and runs queued jobs in order (bounded queue,
// cancellation, prompt reuse through PromptCache). Jobs are token ids in, token ids out; text and HTTP
// live in the caller. TokenGenerator is the interface the server depends on (a fake stands in for tests).
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
};

struct GenerationJob {
  std::vector<int> prompt;
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<int> stop_tokens;
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
  int prefill_chunk = 512;
  PromptCacheOptions prompt_cache;
};

class GenerationWorker : public TokenGenerator {
 public:
  GenerationWorker(const Model& model, WorkerOptions options);
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
  void run(Queued& q, JobResult& result);

  const Model& model_;
  WorkerOptions options_;
  PromptCache cache_;  // touched only by the worker thread
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  size_t cache_entries_ = 0, cache_bytes_ = 0;  // copies for status(), updated after each job
  std::thread thread_;
};

}  // namespace k2
