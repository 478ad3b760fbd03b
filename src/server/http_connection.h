// The per-connection loop of k2mlx's HTTP server: cpp-httplib's Server with its socket reading replaced, so
// that every request is read whole and framing-checked (http_framing.h) before httplib parses it from memory.
// Routes, handlers and response writing stay httplib's.
#pragma once

#include <httplib.h>

#include <functional>
#include <string>

namespace k2 {

// Why this exists: Debian's cpp-httplib 0.11.4 (compiled into libcpp-httplib.so, so it cannot be patched
// from here) reads each request of a keep-alive connection through a fresh buffered stream, so the bytes of
// a pipelined second request are lost; it reads the body only after the pre-routing handler, so a 401 leaves
// the body to be parsed as the next request; it trusts Content-Length and chunk sizes ("-5" or 10^20 hold the
// connection until the read timeout); it silently skips header lines without a colon; and an idle keep-alive
// or half-sent request holds up Server::stop() for the whole read timeout. Server::process_and_close_socket
// is virtual and Server::process_request protected, which lets this class own the connection and still use
// httplib's parser and writer for each request.
class FramedHttpServer : public httplib::Server {
 public:
  // Renders the JSON body answered for a request whose framing is refused (the connection closes after
  // it), and may log it; `remote` is the client's address.
  using ErrorBody = std::function<std::string(int status, const std::string& message, const std::string& remote)>;
  explicit FramedHttpServer(ErrorBody error_body);

 private:
  bool process_and_close_socket(socket_t sock) override;
  ErrorBody error_body_;
};

}  // namespace k2
