// A small pool of worker threads for our CPU kernels: run(n, job) calls job(0..n-1) on the workers and the
// calling thread, taking job numbers from a shared counter (dynamic balancing), and returns when all are
// done. One run at a time (callers are serialised); jobs touch only raw memory, never MLX arrays.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace k2::kernels {

class ThreadPool {
 public:
  // `threads` counts the calling thread: 1 means no workers.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs job(i) for i in [0, n); rethrows the first exception a job threw.
  void run(int n, const std::function<void(int)>& job);

 private:
  void worker_loop();
  void work_on(const std::function<void(int)>& job, int n);

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one run at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int n_jobs_ = 0;
  std::atomic<int> next_{0};
  int active_ = 0;          // workers inside the current run
  unsigned generation_ = 0;  // bumped per run so a worker joins each run once
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace k2::kernels
