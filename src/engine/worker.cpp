// The engine thread: moves queued jobs into the Scheduler while the batch has room and runs its steps until
// nothing is queued or running. MLX streams are per thread in 0.32: all model work runs on this thread.
#include "engine/worker.h"

#include <fmt/format.h>

#include "engine/scheduler.h"

namespace k2 {

GenerationWorker::GenerationWorker(std::unique_ptr<ModelStep> step, WorkerOptions options)
    : step_(std::move(step)), options_(options) {
  if (options_.parallel < 1)
    throw InputError(fmt::format("--parallel must be at least 1, got {}", options_.parallel));
  if (options_.step_tokens < 0)
    throw InputError(fmt::format("--step-tokens must be >= 0, got {}", options_.step_tokens));
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
  WorkerStatus s;
  s.queued = queue_.size();
  s.busy = running_ > 0;
  s.queue_capacity = options_.max_queue;
  s.prompt_cache_entries = cache_entries_;
  s.prompt_cache_bytes = cache_bytes_;
  s.running = running_;
  s.parallel = static_cast<size_t>(options_.parallel);
  return s;
}

void GenerationWorker::loop() {
  Scheduler scheduler(*step_, options_.parallel, options_.step_tokens);
  while (true) {
    std::vector<Queued> admitted;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !scheduler.idle(); });
      if (stopping_) {
        scheduler.cancel_all();
        for (auto& q : queue_) q.handle->cancel();
      }
      if (stopping_ && queue_.empty() && scheduler.idle()) break;
      size_t room = static_cast<size_t>(scheduler.parallel()) - scheduler.running();
      while (room-- > 0 && !queue_.empty()) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      running_ = scheduler.running() + admitted.size();  // busy as soon as a job leaves the queue
    }
    const auto now = std::chrono::steady_clock::now();
    for (Queued& q : admitted) {
      scheduler.add(std::move(q.job), q.handle, std::chrono::duration<double>(now - q.queued_at).count());
    }
    try {
      if (!scheduler.idle()) scheduler.step();
    } catch (...) {
      scheduler.fail_all(std::current_exception());
    }
    std::lock_guard lock(mutex_);
    running_ = scheduler.running();
    cache_entries_ = step_->cache_entries();
    cache_bytes_ = step_->cache_bytes();
  }
  step_->finish();
}

}  // namespace k2
