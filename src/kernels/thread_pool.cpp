// Worker threads sleep on a condition variable between runs; a run wakes them, everyone (the caller too)
// pulls job numbers from an atomic counter, and the caller waits until every worker has left the run.
#include "kernels/thread_pool.h"

#include <algorithm>

namespace k2::kernels {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_on(const std::function<void(int)>& job, int n) {
  for (;;) {
    const int i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n) return;
    try {
      job(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      next_.store(n, std::memory_order_relaxed);  // abandon the remaining jobs
    }
  }
}

void ThreadPool::worker_loop() {
  unsigned seen = 0;
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    int n = 0;
    {
      // The run's job and size are read under the lock: a worker that wakes after its run ended sees
      // n_jobs_ == 0 and must not touch the counter, which may already belong to the next run.
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (n_jobs_ == 0) continue;
      job = job_;
      n = n_jobs_;
      ++active_;
    }
    work_on(*job, n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --active_;
    }
    done_.notify_one();
  }
}

void ThreadPool::run(int n, const std::function<void(int)>& job) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> serial(run_mutex_);
  if (workers_.empty() || n == 1) {
    for (int i = 0; i < n; ++i) job(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &job;
    n_jobs_ = n;
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  work_on(job, n);
  std::exception_ptr error;
  {
    // Wait for every worker that joined; clearing n_jobs_ under the lock keeps late ones out.
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_ == 0; });
    job_ = nullptr;
    n_jobs_ = 0;
    error = error_;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace k2::kernels
