// Worker thread: pops jobs in order and hands each to the JobRunner. The local runner leases a session
// from the prompt cache, prefills the uncached part in chunks (checking cancellation between chunks),
// runs generate() on the tail and keeps the session.
#include "engine/worker.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {
double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

GenerationWorker::GenerationWorker(const Model& model, WorkerOptions options)
    : GenerationWorker(std::make_unique<LocalJobRunner>(model, options.prefill, options.prompt_cache), options) {}

GenerationWorker::GenerationWorker(std::unique_ptr<JobRunner> runner, WorkerOptions options)
    : runner_(std::move(runner)), options_(options) {
  thread_ = std::thread([this] { loop(); });
}

GenerationWorker::~GenerationWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& q : queue_) q.handle->cancel();
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<JobHandle> GenerationWorker::submit(GenerationJob job) {
  auto handle = std::make_shared<JobHandle>();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw BusyError("the generation worker is shutting down");
    if (queue_.size() >= options_.max_queue)
      throw BusyError(fmt::format("the server is busy: {} requests are already waiting (queue limit {})",
                                  queue_.size(), options_.max_queue));
    queue_.push_back(Queued{std::move(job), handle, std::chrono::steady_clock::now()});
  }
  cv_.notify_one();
  return handle;
}

WorkerStatus GenerationWorker::status() const {
  std::lock_guard lock(mutex_);
  return WorkerStatus{queue_.size(), busy_, options_.max_queue, cache_entries_, cache_bytes_};
}

void GenerationWorker::loop() {
  // MLX streams are per thread in 0.32: everything below runs on this thread's default stream.
  while (true) {
    Queued q;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping and drained
      q = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    JobResult result;
    result.prompt_tokens = static_cast<int>(q.job.prompt.size());
    result.queue_seconds = seconds_between(q.queued_at, std::chrono::steady_clock::now());
    if (q.handle->cancelled()) {
      result.finish_reason = "cancelled";
    } else {
      try {
        if (q.job.prompt.empty()) throw InputError("the prompt is empty: at least one token is needed");
        q.job.sampling.validate();
        runner_->run(q.job, *q.handle, result);
      } catch (...) {
        result.error = std::current_exception();
      }
    }
    {
      std::lock_guard lock(mutex_);
      busy_ = false;
      cache_entries_ = runner_->cache_entries();
      cache_bytes_ = runner_->cache_bytes();
    }
    if (q.job.on_done) {
      try {
        q.job.on_done(result);
      } catch (...) {
        // A failing callback must not take the worker down; the caller owns its own errors.
      }
    }
  }
  runner_->finish();
}

LocalJobRunner::LocalJobRunner(const Model& model, PrefillChunking prefill, PromptCacheOptions prompt_cache)
    : model_(model), prefill_(prefill), cache_(model, prompt_cache) {}

void LocalJobRunner::run(GenerationJob& job, const JobHandle& handle, JobResult& result) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int>& prompt = job.prompt;
  PromptCache::Lease lease = cache_.acquire(prompt);
  Session& session = *lease.session;
  result.cached_tokens = lease.reused;

  // All but the last prompt token is prefilled here, chunk by chunk, so a cancelled request stops between
  // chunks; generate() then runs the last token as a decode step, its repetition-penalty window seeded from
  // the whole prompt. This is how Session::prefill cuts a prompt (and PipelineJobRunner), so the same
  // request gives the same floating-point work, hence the same tokens in bf16, on every path.
  const int n = static_cast<int>(prompt.size());
  const int tail = 1;
  // One chunk size for the whole prompt (from its full length), as Session::prefill sizes it.
  const PrefillChunking chunk{prefill_chunk_size(model_.config(), model_.dtype(), n, prefill_), 0};
  for (int pos = lease.reused; pos < n - tail; pos += chunk.chunk) {
    if (handle.cancelled()) {
      result.finish_reason = "cancelled";
      return;  // the session is dropped: its cache holds a partial prompt nobody asked to keep
    }
    const int end = std::min(pos + chunk.chunk, n - tail);
    session.extend(std::vector<int>(prompt.begin() + pos, prompt.begin() + end), chunk);
  }

  if (job.prompt_logprobs && n > 1) {
    // Scored on a fresh session in one all-positions prefill, as `k2mlx logits --all-positions` computes them.
    Session scoring(model_);
    mx::array all = scoring.prefill(prompt, chunk, true);  // [n, vocab]
    result.prompt_logprobs = sequence_logprobs(mx::slice(all, {0, 0}, {n - 1, all.shape(1)}),
                                               std::vector<int>(prompt.begin() + 1, prompt.end()),
                                               std::max(0, job.sampling.logprobs));
  }
  Sampler sampler(job.sampling);
  GenerateOptions options;
  options.max_tokens = job.max_tokens;
  options.prefill = chunk;
  options.stop_tokens = job.stop_tokens;
  if (job.sampling.repetition_penalty != 1.0f) options.history.assign(prompt.begin(), prompt.end() - tail);
  std::chrono::steady_clock::time_point first;
  bool have_first = false;
  const std::vector<int> tail_ids(prompt.end() - tail, prompt.end());
  GenerationStats stats = generate(session, tail_ids, sampler, options, [&](int id) {
    if (!have_first) {
      have_first = true;
      first = std::chrono::steady_clock::now();
      result.first_token_seconds = seconds_between(start, first);
    }
    if (handle.cancelled()) return false;
    if (job.sampling.logprobs >= 0) {
      TokenLogprobs lp = sampler.take_logprobs();
      if (job.on_logprobs) job.on_logprobs(lp);
    }
    return !job.on_token || job.on_token(id);
  });
  const auto end = std::chrono::steady_clock::now();
  if (have_first) result.decode_seconds = seconds_between(first, end);
  result.tokens = stats.tokens;
  result.finish_reason = stats.finish_reason;

  // The cache may hold one token more or less than prompt + output (generate computes one step ahead);
  // keep exactly the part whose ids are known.
  std::vector<int> held(prompt);
  held.insert(held.end(), stats.tokens.begin(), stats.tokens.end());
  const int keep = std::min(session.length(), static_cast<int>(held.size()));
  held.resize(keep);
  session.trim_to(keep);
  cache_.release(std::move(lease.session), std::move(held));
}

}  // namespace k2
