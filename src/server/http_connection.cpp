// One client connection: read until scan_request() sees a whole request (or a framing fault, answered and
// closed at once), let httplib parse and answer that request from memory, keep the bytes after it for the
// next (pipelined) request. Waits are sliced so that a stopping server ends idle connections within ~100 ms.
#include "server/http_connection.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>

#include "server/connection_probe.h"
#include "server/http_framing.h"

namespace k2 {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr milliseconds kSlice(100);               // how often a waiting connection looks at the stop flag
constexpr size_t kReadChunk = size_t{256} << 10;  // bytes asked of recv() at a time
constexpr size_t kKeepCapacity = size_t{1} << 20;  // a buffer larger than this is released after its request

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_NOSIGNAL;
#else
constexpr int kSendFlags = 0;  // macOS: SO_NOSIGPIPE is set on the socket instead
#endif

milliseconds to_ms(time_t sec, time_t usec) { return milliseconds(sec * 1000 + usec / 1000); }

// Waits until `fd` is ready for `events`; false on timeout or error.
bool wait_for(int fd, short events, milliseconds timeout) {
  pollfd p{fd, events, 0};
  while (true) {
    const int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0 && (p.revents & (events | POLLHUP | POLLERR)) != 0 && (p.revents & POLLNVAL) == 0;
  }
}

const char* reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    default: return "Error";
  }
}

// What httplib reads for one request: the request's bytes (in at most two pieces, when a header line was
// cut out), with writes going straight to the socket.
class RequestStream final : public httplib::Stream {
 public:
  RequestStream(int fd, std::string_view first, std::string_view second, milliseconds write_timeout)
      : fd_(fd), first_(first), second_(second), write_timeout_(write_timeout) {}

  bool is_readable() const override { return !first_.empty() || !second_.empty(); }
  bool is_writable() const override { return wait_for(fd_, POLLOUT, write_timeout_); }

  ssize_t read(char* ptr, size_t size) override {
    std::string_view& from = first_.empty() ? second_ : first_;
    const size_t n = std::min(size, from.size());
    std::memcpy(ptr, from.data(), n);
    from.remove_prefix(n);
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    return ::send(fd_, ptr, size, kSendFlags);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { socket_endpoint(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { socket_endpoint(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  int fd_;
  std::string_view first_, second_;
  milliseconds write_timeout_;
};

enum class Fill { Data, Timeout, Closed, Stopped };

class Connection {
 public:
  Connection(int fd, const std::atomic<socket_t>& listening) : fd_(fd), listening_(listening) {
#ifdef SO_NOSIGPIPE
    int yes = 1;
    setsockopt(fd_, SOL_SOCKET, SO_NOSIGPIPE, &yes, sizeof(yes));
#endif
  }

  bool stopping() const { return listening_ == INVALID_SOCKET; }
  std::string& buffer() { return buf_; }

  // Appends what arrives within `timeout` (at least one byte, or the reason there was none).
  Fill fill(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (stopping()) return Fill::Stopped;
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return Fill::Timeout;
      if (!wait_for(fd_, POLLIN, std::min(left, kSlice))) continue;
      const size_t old = buf_.size();
      buf_.resize(old + kReadChunk);
      const ssize_t n = ::recv(fd_, buf_.data() + old, kReadChunk, 0);
      buf_.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
      if (n > 0) return Fill::Data;
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      return Fill::Closed;
    }
  }

  // Drops one answered request; the bytes after it (a pipelined next request) stay.
  void consume(size_t n) {
    buf_.erase(0, n);
    if (buf_.capacity() > kKeepCapacity) buf_.shrink_to_fit();
  }

  bool send_all(std::string_view data, milliseconds timeout) {
    while (!data.empty()) {
      if (!wait_for(fd_, POLLOUT, timeout)) return false;
      const ssize_t n = ::send(fd_, data.data(), data.size(), kSendFlags);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Answers a refused request and closes. The client may still be sending the body: closing with unread
  // bytes makes the kernel send a reset, which can destroy the answer before the client reads it, so
  // half-close first and discard what arrives for a short, bounded time.
  void refuse(int status, const std::string& body, milliseconds write_timeout) {
    const std::string head = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", status,
        reason(status), body.size());
    if (!send_all(head + body, write_timeout)) return;
    ::shutdown(fd_, SHUT_WR);
    const auto deadline = Clock::now() + milliseconds(1000);
    char sink[16384];
    while (Clock::now() < deadline && !stopping()) {
      if (!wait_for(fd_, POLLIN, kSlice)) continue;
      const ssize_t n = ::recv(fd_, sink, sizeof(sink), 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
    }
  }

  void close() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
  }

 private:
  int fd_;
  const std::atomic<socket_t>& listening_;
  std::string buf_;
};

}  // namespace

FramedHttpServer::FramedHttpServer(ErrorBody error_body) : error_body_(std::move(error_body)) {}

bool FramedHttpServer::process_and_close_socket(socket_t sock) {
  Connection conn(static_cast<int>(sock), svr_sock_);
  const FrameLimits limits{FrameLimits{}.max_head_bytes, payload_max_length_};
  const milliseconds read_timeout = to_ms(read_timeout_sec_, read_timeout_usec_);
  const milliseconds write_timeout = to_ms(write_timeout_sec_, write_timeout_usec_);
  const milliseconds keep_alive = to_ms(keep_alive_timeout_sec_, 0);
  auto refuse = [&](int status, const std::string& message) {
    std::string remote;
    int port = 0;
    socket_endpoint(static_cast<int>(sock), true, remote, port);
    conn.refuse(status, error_body_(status, message, remote), write_timeout);
  };

  bool ok = true;
  for (size_t served = 0; ok && !conn.stopping(); ++served) {
    RequestFrame frame;
    bool continue_sent = false;
    while ((frame = scan_request(conn.buffer(), limits)).state == RequestFrame::State::Incomplete) {
      // The client waits for "100 Continue" before it sends the body; httplib would only send it after
      // the body arrived, so answer it here and hide the Expect line from httplib.
      if (frame.expect_continue && !continue_sent && conn.buffer().size() == frame.head_end) {
        if (!conn.send_all("HTTP/1.1 100 Continue\r\n\r\n", write_timeout)) break;
        continue_sent = true;
      }
      // Between requests a connection may idle for the keep-alive time; a request once begun must keep
      // arriving (the read timeout bounds each wait, as httplib's does).
      const bool idle = conn.buffer().size() == frame.skip;
      const Fill got = conn.fill(idle ? keep_alive : read_timeout);
      if (got == Fill::Data) continue;
      if (got == Fill::Timeout && !idle)
        refuse(408, fmt::format("the request did not arrive completely within {} s", read_timeout.count() / 1000));
      break;
    }
    if (frame.state == RequestFrame::State::Invalid) refuse(frame.status, frame.message);
    if (frame.state != RequestFrame::State::Complete) break;

    const std::string_view all(conn.buffer());
    const bool cut = continue_sent && frame.expect_continue;
    RequestStream strm(static_cast<int>(sock), all.substr(frame.skip, (cut ? frame.expect_begin : frame.end) - frame.skip),
                       cut ? all.substr(frame.expect_end, frame.end - frame.expect_end) : std::string_view(), write_timeout);
    const bool close_connection = served + 1 >= keep_alive_max_count_ || conn.stopping();
    bool connection_closed = false;
    ok = process_request(strm, close_connection, connection_closed, nullptr);
    conn.consume(frame.end);
    if (close_connection || connection_closed) break;
  }
  conn.close();
  return ok;
}

}  // namespace k2
