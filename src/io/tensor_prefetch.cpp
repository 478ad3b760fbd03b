// The read-ahead pool: readers take chunks from the front of a queue of tensors (the one the caller waits for
// goes first), start a new tensor only while the bytes read but not taken stay within the budget, and hand
// finished tensors to take() as arrays that own their buffers (no copy).
#include "io/tensor_prefetch.h"

#include <algorithm>

#include "core/error.h"

namespace k2 {
namespace mx = mlx::core;

namespace {
constexpr size_t kNone = static_cast<size_t>(-1);
}

int default_read_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp<unsigned>(n, 2, 8));
}

TensorPrefetcher::TensorPrefetcher(const Checkpoint& ckpt, const std::vector<std::vector<std::string>>& groups,
                                   PrefetchOptions options)
    : ckpt_(ckpt), opt_(options) {
  opt_.chunk_bytes = std::max<uint64_t>(opt_.chunk_bytes, 1);
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& name : groups[g]) {
      if (index_.count(name)) continue;
      Entry e;
      try {
        e.info = ckpt.info(name);
        e.file = &ckpt.shard_file(name);
      } catch (const CheckpointError&) {
        continue;  // take() reads it directly and so raises the shard's own error
      }
      e.name = name;
      e.group = g;
      index_.emplace(name, entries_.size());
      queue_.push_back(entries_.size());
      entries_.push_back(std::move(e));
    }
  const int n = std::max(1, opt_.threads);
  threads_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { reader(); });
}

TensorPrefetcher::~TensorPrefetcher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

uint64_t TensorPrefetcher::bytes_read() const {
  std::lock_guard lock(mu_);
  return bytes_read_;
}

std::optional<size_t> TensorPrefetcher::next_entry() {
  while (!queue_.empty()) {
    const size_t i = queue_.front();
    Entry& e = entries_[i];
    const bool handed_out = e.state == State::Reading && e.next >= e.info.nbytes;
    if ((e.state != State::Pending && e.state != State::Reading) || handed_out) {
      queue_.pop_front();
      continue;
    }
    if (e.state == State::Pending) {
      // The tensor the caller waits for starts regardless of the budget, so it can never wait on tensors
      // that are only taken after it.
      const bool waited_for = i == urgent_;
      if (!waited_for && in_flight_ > 0 && in_flight_ + e.info.nbytes > opt_.in_flight_bytes) return std::nullopt;
      try {
        e.data.emplace(allocate_tensor_buffer(e.info.nbytes));
      } catch (...) {
        e.error = std::current_exception();
        e.state = State::Failed;
        queue_.pop_front();
        done_cv_.notify_all();
        continue;
      }
      e.state = State::Reading;
      in_flight_ += e.info.nbytes;
    }
    return i;
  }
  return std::nullopt;
}

void TensorPrefetcher::reader() {
  std::unique_lock lock(mu_);
  for (;;) {
    std::optional<size_t> next;
    work_cv_.wait(lock, [&] { return stop_ || (next = next_entry()).has_value(); });
    if (stop_) return;
    Entry& e = entries_[*next];
    const uint64_t begin = e.next, len = std::min(opt_.chunk_bytes, e.info.nbytes - begin);
    e.next += len;
    ++e.outstanding;
    char* dst = static_cast<char*>(e.data->buffer().raw_ptr()) + begin;
    const bool skip = e.error != nullptr;  // an earlier chunk failed: the tensor is lost anyway
    lock.unlock();
    std::exception_ptr error;
    if (!skip && len > 0) {
      if (begin == 0) e.file->advise_will_read(e.info);
      try {
        e.file->read_bytes(e.info, begin, len, dst);
      } catch (...) {
        error = std::current_exception();
      }
    }
    lock.lock();
    --e.outstanding;
    if (error && !e.error) e.error = error;
    if (!error && !skip) bytes_read_ += len;
    if (e.next >= e.info.nbytes && e.outstanding == 0) finish(e);
  }
}

void TensorPrefetcher::release(Entry& e) {
  e.data.reset();
  e.array.reset();
  in_flight_ -= e.info.nbytes;
}

void TensorPrefetcher::finish(Entry& e) {
  if (e.error) {
    release(e);
    e.state = State::Failed;
  } else {
    e.array.emplace(tensor_array(e.info, std::move(*e.data)));
    e.data.reset();
    e.state = State::Ready;
  }
  if (e.drop_when_done) {
    if (e.state == State::Ready) release(e);
    e.state = State::Dropped;
  }
  done_cv_.notify_all();
  work_cv_.notify_all();  // the budget may have room again
}

void TensorPrefetcher::drop_before(size_t group) {
  bool freed = false;
  for (; drop_cursor_ < entries_.size() && entries_[drop_cursor_].group < group; ++drop_cursor_) {
    Entry& d = entries_[drop_cursor_];
    switch (d.state) {
      case State::Pending:
      case State::Failed: d.state = State::Dropped; break;
      case State::Ready:
        release(d);
        d.state = State::Dropped;
        freed = true;
        break;
      case State::Reading: d.drop_when_done = true; break;
      case State::Taken:
      case State::Dropped: break;
    }
  }
  if (freed) work_cv_.notify_all();
}

mx::array TensorPrefetcher::take(const std::string& name) {
  std::unique_lock lock(mu_);
  auto it = index_.find(name);
  if (it == index_.end()) {
    lock.unlock();
    return ckpt_.read(name);
  }
  const size_t i = it->second;
  Entry& e = entries_[i];
  drop_before(e.group);
  if (e.state == State::Pending) {
    queue_.push_front(i);
    urgent_ = i;
    work_cv_.notify_all();
  }
  done_cv_.wait(lock, [&] { return e.state != State::Pending && e.state != State::Reading; });
  if (urgent_ == i) urgent_ = kNone;
  if (e.state == State::Failed) {
    e.state = State::Taken;
    std::rethrow_exception(e.error);
  }
  if (e.state != State::Ready) {  // taken before, or dropped with its group
    lock.unlock();
    return ckpt_.read(name);
  }
  mx::array a = std::move(*e.array);
  release(e);
  e.state = State::Taken;
  work_cv_.notify_all();
  return a;
}

}  // namespace k2
