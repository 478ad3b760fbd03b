// The HTTP front of `k2mlx serve`: OpenAI routes, the chat page, bearer-key checks, server-sent events,
// disconnect detection and one log line per request. Maps every error to an HTTP status in one place
// (http_server.cpp: send_error). Translates HTTP to CompletionService calls; never touches tensors.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "server/completion_service.h"

namespace httplib {
class Server;
}

namespace k2 {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;         // 0 = any free port
  std::string api_key;     // empty = no authentication
  int threads = 32;        // HTTP worker threads (each open request holds one)
  size_t max_body_bytes = size_t{32} << 20;
  bool log_requests = true;
};

class HttpServer {
 public:
  HttpServer(CompletionService& service, HttpOptions options);
  ~HttpServer();

  // Binds the socket; returns the port (useful with port 0). Throws k2::Error when it cannot bind.
  int bind();
  // Serves until stop() (call bind() first).
  void serve();
  void stop();

 private:
  void routes();
  CompletionService& service_;
  HttpOptions options_;
  std::unique_ptr<httplib::Server> http_;
  int listen_fd_ = -1;  // the listening socket, once bound
  std::atomic<bool> stopping_{false};
};

}  // namespace k2
