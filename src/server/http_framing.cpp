// Request framing checks (RFC 9112 §2-§7): CRLF-terminated lines, header lines with a colon and a token
// name, one numeric Content-Length or "Transfer-Encoding: chunked" with hexadecimal chunk sizes, and the
// server's size limits applied to the declared lengths before any body byte is awaited.
#include "server/http_framing.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdint>
#include <optional>

namespace k2 {
namespace {

constexpr size_t kMaxChunkLine = 1024;  // chunk size plus extensions; real clients send a few bytes

bool is_tchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A short, printable excerpt of client bytes for an error message.
std::string excerpt(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 60) out += "...";
  return out;
}

RequestFrame invalid(RequestFrame f, int status, std::string message) {
  f.state = RequestFrame::State::Invalid;
  f.status = status;
  f.message = std::move(message);
  return f;
}

std::string too_large(uint64_t declared, size_t limit) {
  return fmt::format("the request body is too large: {} bytes declared, this server accepts at most {}", declared, limit);
}

// Finds the CRLF-terminated line starting at `pos`. Returns the line without CRLF and moves `pos` past
// it; nullopt when the line has not fully arrived. Sets `error` when the line ends in a bare LF.
std::optional<std::string_view> next_line(std::string_view b, size_t& pos, bool& bare_lf) {
  const size_t nl = b.find('\n', pos);
  if (nl == std::string_view::npos) return std::nullopt;
  bare_lf = nl == pos || b[nl - 1] != '\r';
  std::string_view line = b.substr(pos, nl - pos - (bare_lf ? 0 : 1));
  pos = nl + 1;
  return line;
}

// The body of a chunked request starting at `f.head_end`: each chunk size must be hexadecimal (a size of
// "-5" is refused here; strtoul would read it as 2^64-5 and wait for that many bytes).
RequestFrame scan_chunked(std::string_view b, RequestFrame f, const FrameLimits& limits) {
  size_t pos = f.head_end;
  uint64_t total = 0;
  while (true) {
    bool bare_lf = false;
    const size_t line_start = pos;
    auto line = next_line(b, pos, bare_lf);
    if (!line) {
      if (b.size() - line_start > kMaxChunkLine) return invalid(f, 400, "a chunk-size line is too long");
      return f;
    }
    if (line->size() > kMaxChunkLine) return invalid(f, 400, "a chunk-size line is too long");
    if (bare_lf) return invalid(f, 400, "a chunk-size line ends with a bare LF (HTTP needs CRLF)");
    size_t i = 0;
    while (i < line->size() && (*line)[i] == '0') ++i;  // leading zeros are allowed and carry no value
    const size_t first_digit = i;
    uint64_t size = 0;
    for (; i < line->size() && std::isxdigit(static_cast<unsigned char>((*line)[i])); ++i) {
      if (i - first_digit >= 15)
        return invalid(f, 413, fmt::format("the request body is too large: a chunk of 2^60 bytes or more, this server "
                                           "accepts at most {}", limits.max_body_bytes));
      const char c = lower((*line)[i]);
      size = size * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    const std::string_view rest = trim(line->substr(i));
    if (i == 0 || (!rest.empty() && rest.front() != ';'))
      return invalid(f, 400, fmt::format("invalid chunk size '{}' (expected hexadecimal digits)", excerpt(*line)));
    if (size == 0) break;
    total += size;
    if (total > limits.max_body_bytes) return invalid(f, 413, too_large(total, limits.max_body_bytes));
    if (b.size() < pos + size + 2) return f;
    if (b.substr(pos + size, 2) != "\r\n") return invalid(f, 400, "chunk data is not followed by CRLF");
    pos += size + 2;
  }
  bool bare_lf = false;
  const size_t trailer_start = pos;
  auto trailer = next_line(b, pos, bare_lf);
  if (!trailer) {
    if (b.size() - trailer_start > kMaxChunkLine) return invalid(f, 400, "trailer fields after a chunked body are not supported");
    return f;
  }
  if (bare_lf || !trailer->empty())
    return invalid(f, 400, "trailer fields after a chunked body are not supported (end the body with 0 CRLF CRLF)");
  f.state = RequestFrame::State::Complete;
  f.end = pos;
  return f;
}

}  // namespace

RequestFrame scan_request(std::string_view b, const FrameLimits& limits) {
  RequestFrame f;
  size_t pos = 0;
  while (b.substr(pos, 2) == "\r\n") pos += 2;
  f.skip = pos;
  if (f.skip > limits.max_head_bytes) return invalid(f, 400, "too many empty lines before the request line");

  std::optional<uint64_t> content_length;
  std::string transfer_encoding;
  bool have_te = false, request_line = true;
  while (true) {
    bool bare_lf = false;
    const size_t line_start = pos;
    auto line = next_line(b, pos, bare_lf);
    if (!line) {
      if (b.size() - f.skip > limits.max_head_bytes)
        return invalid(f, 431, fmt::format("the request head is larger than {} bytes", limits.max_head_bytes));
      return f;
    }
    if (pos - f.skip > limits.max_head_bytes)
      return invalid(f, 431, fmt::format("the request head is larger than {} bytes", limits.max_head_bytes));
    if (bare_lf) return invalid(f, 400, "a line of the request head ends with a bare LF (HTTP needs CRLF)");
    if (line->find('\r') != std::string_view::npos || line->find('\0') != std::string_view::npos)
      return invalid(f, 400, "the request head contains a bare CR or a NUL byte");
    if (request_line) {  // its syntax is cpp-httplib's to check (it answers 400 or 414)
      request_line = false;
      continue;
    }
    if (line->empty()) break;
    if (line->front() == ' ' || line->front() == '\t')
      return invalid(f, 400, "obsolete line folding in the request head (a header line starts with whitespace)");
    const size_t colon = line->find(':');
    if (colon == std::string_view::npos)
      return invalid(f, 400, fmt::format("header line without a colon: '{}'", excerpt(*line)));
    const std::string_view name = line->substr(0, colon);
    bool token = !name.empty();
    for (char c : name) token = token && is_tchar(c);
    if (!token) return invalid(f, 400, fmt::format("invalid header field name '{}'", excerpt(name)));
    const std::string_view value = trim(line->substr(colon + 1));
    if (iequals(name, "Content-Length")) {
      bool digits = !value.empty();
      for (char c : value) digits = digits && c >= '0' && c <= '9';
      if (!digits) return invalid(f, 400, fmt::format("invalid Content-Length '{}' (expected a byte count)", excerpt(value)));
      uint64_t n = 0;
      for (char c : value) {
        if (n > (UINT64_MAX - 9) / 10) {
          n = UINT64_MAX;
          break;
        }
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (content_length && *content_length != n) return invalid(f, 400, "the request has two different Content-Length headers");
      content_length = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      transfer_encoding += (have_te ? "," : "") + std::string(value);
      have_te = true;
    } else if (iequals(name, "Expect") && iequals(value, "100-continue")) {
      f.expect_continue = true;
      f.expect_begin = line_start;
      f.expect_end = pos;
    }
  }
  f.head_end = pos;

  if (have_te) {
    // A request with both is a smuggling attempt or a broken proxy (RFC 9112 §6.3): refuse rather than guess.
    if (content_length) return invalid(f, 400, "the request has both Content-Length and Transfer-Encoding");
    if (!iequals(trim(transfer_encoding), "chunked"))
      return invalid(f, 501, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)", excerpt(transfer_encoding)));
    return scan_chunked(b, f, limits);
  }
  const uint64_t length = content_length.value_or(0);
  if (length > limits.max_body_bytes) return invalid(f, 413, too_large(length, limits.max_body_bytes));
  if (b.size() - f.head_end < length) return f;
  f.state = RequestFrame::State::Complete;
  f.end = f.head_end + static_cast<size_t>(length);
  return f;
}

}  // namespace k2
