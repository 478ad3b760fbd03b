// HTTP request framing (scan_request): where a request ends, pipelined requests, and the framing faults
// that must be refused at once (RFC 9112) instead of waiting for a body that never comes.
#include <gtest/gtest.h>

#include "server/http_framing.h"

namespace k2 {
namespace {

using State = RequestFrame::State;

RequestFrame scan(std::string_view bytes, size_t max_body = 1000) { return scan_request(bytes, FrameLimits{4096, max_body}); }

void expect_refused(std::string_view bytes, int status, const std::string& words) {
  const RequestFrame f = scan(bytes);
  EXPECT_EQ(f.state, State::Invalid) << bytes;
  EXPECT_EQ(f.status, status) << bytes;
  EXPECT_NE(f.message.find(words), std::string::npos) << f.message;
}

TEST(ServerFraming, ContentLengthBodyAndPipelinedNext) {
  const std::string one = "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
  const std::string two = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
  const RequestFrame f = scan(one + two);
  ASSERT_EQ(f.state, State::Complete);
  EXPECT_EQ(f.end, one.size());  // the second request starts right after the first body
  const RequestFrame g = scan(std::string_view(one + two).substr(f.end));
  ASSERT_EQ(g.state, State::Complete);
  EXPECT_EQ(g.end, two.size());
}

TEST(ServerFraming, IncompleteUntilEveryByteArrived) {
  const std::string req = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  for (size_t n = 0; n < req.size(); ++n) EXPECT_EQ(scan(req.substr(0, n)).state, State::Incomplete) << n;
  EXPECT_EQ(scan(req).state, State::Complete);
}

TEST(ServerFraming, LeadingEmptyLinesAreSkipped) {
  const RequestFrame f = scan("\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(f.state, State::Complete);
  EXPECT_EQ(f.skip, 4u);
}

TEST(ServerFraming, ImpossibleContentLengthsAreRefusedBeforeTheBody) {
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 413, "too large");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413, "at most 1000");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "invalid Content-Length '-5'");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", 400, "invalid Content-Length");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400, "two different");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both");
}

TEST(ServerFraming, HeaderLinesMustBeWellFormed) {
  expect_refused("GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, "without a colon: 'Host a'");
  expect_refused("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "invalid header field name");
  expect_refused("GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n", 400, "line folding");
  expect_refused("GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF");
  expect_refused("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "bare CR");
  // The fault is seen as soon as the line is complete, without waiting for the end of the head.
  EXPECT_EQ(scan("GET / HTTP/1.1\r\nno colon here\r\n").state, State::Invalid);
  EXPECT_EQ(scan("GET / HTTP/1.1\r\n" + std::string(5000, 'a')).status, 431);
}

TEST(ServerFraming, ChunkedBodies) {
  const std::string req = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n";
  const RequestFrame f = scan(req + "GET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(f.state, State::Complete);
  EXPECT_EQ(f.end, req.size());
  for (size_t n = 0; n < req.size(); ++n) EXPECT_EQ(scan(req.substr(0, n)).state, State::Incomplete) << n;
  const std::string te = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  expect_refused(te + "-5\r\n", 400, "invalid chunk size '-5'");
  expect_refused(te + "zz\r\n", 400, "invalid chunk size");
  expect_refused(te + "3e9\r\n", 413, "too large");
  expect_refused(te + "fffffffffffffffffffff\r\n", 413, "too large");
  expect_refused(te + "3\r\nabcX\r\n", 400, "not followed by CRLF");
  expect_refused(te + "0\r\nX-Trailer: 1\r\n\r\n", 400, "trailer");
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "only chunked");
}

TEST(ServerFraming, ExpectContinueIsReportedWithItsLine) {
  const std::string head = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  const RequestFrame f = scan(head);
  EXPECT_EQ(f.state, State::Incomplete);
  EXPECT_TRUE(f.expect_continue);
  EXPECT_EQ(f.head_end, head.size());
  EXPECT_EQ(head.substr(f.expect_begin, f.expect_end - f.expect_begin), "Expect: 100-continue\r\n");
}

}  // namespace
}  // namespace k2
