// Reading a checkpoint's tensors ahead of the code that binds them: a small pool of threads reads the
// tensors a load will need, in the order it will take them, in chunks spread over the threads, with a bound
// on the bytes read but not yet taken. Knows nothing of model layouts (the caller gives names in order).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "io/checkpoint.h"

namespace k2 {

struct PrefetchOptions {
  int threads = 4;                         // reader threads (>= 1)
  uint64_t in_flight_bytes = 1ull << 30;   // read but not yet taken; one tensor may exceed it
  uint64_t chunk_bytes = 16ull << 20;      // one read call; a large tensor is read by several threads at once
};

// Reader threads that default to the machine's cores, at least 2 (reads also wait on the disk), at most 8.
int default_read_threads();

class TensorPrefetcher {
 public:
  // `groups`: tensor names in the order they will be taken. Once a tensor of group g is taken, what the
  // readers hold of earlier groups is dropped (a later take of it reads it directly), so tensors the
  // caller never takes cannot pin memory. Names whose shard cannot be opened are skipped here: taking one
  // raises the shard's own error. Readers start at once.
  TensorPrefetcher(const Checkpoint& ckpt, const std::vector<std::vector<std::string>>& groups,
                   PrefetchOptions options);
  ~TensorPrefetcher();  // stops the readers and waits for them
  TensorPrefetcher(const TensorPrefetcher&) = delete;
  TensorPrefetcher& operator=(const TensorPrefetcher&) = delete;

  // The tensor's bytes as an array, the same as Checkpoint::read: waits for its read (reading it next if
  // the readers had not reached it), or reads it directly when not held (not listed, taken, dropped).
  // Rethrows the read's CheckpointError (it names the file and the tensor).
  mlx::core::array take(const std::string& name);

  uint64_t bytes_read() const;

 private:
  enum class State { Pending, Reading, Ready, Failed, Taken, Dropped };
  struct Entry {
    std::string name;
    size_t group = 0;
    TensorInfo info;
    const SafetensorsFile* file = nullptr;
    State state = State::Pending;
    std::optional<mlx::core::allocator::Data> data;  // while Reading / Ready
    uint64_t next = 0;    // first byte not yet handed to a reader
    int outstanding = 0;  // chunks being read
    bool drop_when_done = false;
    std::exception_ptr error;
    std::optional<mlx::core::array> array;  // when Ready
  };

  void reader();
  // Under mu_: the entry whose next chunk a reader should read, or nullopt when none may start now.
  std::optional<size_t> next_entry();
  void finish(Entry& e);      // under mu_: last chunk done
  void release(Entry& e);     // under mu_: frees what the entry holds and its share of the budget
  void drop_before(size_t group);

  const Checkpoint& ckpt_;
  PrefetchOptions opt_;
  std::vector<Entry> entries_;  // in take order
  std::unordered_map<std::string, size_t> index_;
  std::deque<size_t> queue_;    // entries with bytes not yet handed out; the front is read first
  size_t drop_cursor_ = 0;      // entries before it belong to dropped groups
  size_t urgent_ = static_cast<size_t>(-1);  // the entry take() waits for, if it had not started
  uint64_t in_flight_ = 0;      // bytes of Reading and Ready entries
  uint64_t bytes_read_ = 0;
  bool stop_ = false;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> threads_;
};

}  // namespace k2
