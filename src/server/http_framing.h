// The byte-level framing of one HTTP/1.1 request (RFC 9112), checked before cpp-httplib parses it: where the
// head ends, whether every header line is well-formed, and how many bytes the body takes (Content-Length or
// chunked). A pure function over received bytes; http_connection.cpp owns the sockets.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace k2 {

struct FrameLimits {
  size_t max_head_bytes = size_t{64} << 10;  // request line + headers; more is answered 431
  size_t max_body_bytes = size_t{32} << 20;  // more is answered 413 (before any body byte is read)
};

struct RequestFrame {
  enum class State { Incomplete, Complete, Invalid };
  State state = State::Incomplete;
  size_t skip = 0;             // empty lines before the request line (RFC 9112 §2.2 says to ignore them)
  size_t head_end = 0;         // offset just past the head's empty line; 0 while the head is incomplete
  size_t end = 0;              // Complete: offset just past the body, where a pipelined next request begins
  bool expect_continue = false;  // the head carries "Expect: 100-continue"
  size_t expect_begin = 0, expect_end = 0;  // that header line's bytes (to drop once we answered it ourselves)
  int status = 0;              // Invalid: the status to answer (400, 413, 431, 501); the connection then closes
  std::string message;         // Invalid: why, for the error body
};

// Looks at the bytes received so far on a connection (starting at a request boundary) and says whether
// they hold one whole, well-framed request. Incomplete means: read more and ask again (never an error by
// itself; the caller bounds the wait). Invalid requests are refused as soon as the fault is visible, so an
// impossible Content-Length or chunk size is answered without waiting for a body.
RequestFrame scan_request(std::string_view bytes, const FrameLimits& limits);

}  // namespace k2
