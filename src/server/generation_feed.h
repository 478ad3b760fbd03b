// The one loop that follows a running request for an HTTP response, streamed or whole: polls it, coalesces
// a stream's pieces after the first, and is the one place that notices a client that went away (checked
// every 200 ms), which cancels the request and waits for the engine to let it go. Knows no HTTP library.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "server/completion_service.h"

namespace k2 {

class GenerationFeed {
 public:
  // client_gone: the client closed the connection or the server is stopping.
  GenerationFeed(std::shared_ptr<RunningRequest> running, std::function<bool()> client_gone);

  // The next piece of output for a stream (piece.done on the last one); after the first piece, what arrives
  // within 20 ms is sent together so that the HTTP thread does not wake once per token while the engine needs
  // the CPU (measured in bench_server.py). False when the client went away (see abandon()).
  bool next(Progress& piece);
  // Everything until the end, in one Progress (a whole response). False when the client went away.
  bool all(Progress& whole);
  // Cancels the request and waits until the engine has finished with it (the client is gone).
  void abandon();

  RunningRequest& running() { return *running_; }
  // Seconds from the feed's start to its first text (or the end): the time to first byte of the response.
  double first_byte_seconds() const { return first_byte_; }

 private:
  bool gone();  // rate-limited client_gone()

  std::shared_ptr<RunningRequest> running_;
  std::function<bool()> client_gone_;
  std::chrono::steady_clock::time_point start_, last_probe_;
  double first_byte_ = 0.0;
  bool abandoned_ = false;
};

}  // namespace k2
