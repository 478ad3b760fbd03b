// libFuzzer target: HTTP/1.1 request framing (server/http_framing.h) on arbitrary received bytes. Checks
// that offsets stay inside the buffer, refusals carry a 4xx/501 status, and framing is stable: the bytes of
// one complete request, scanned alone, give the same frame (what pipelining relies on).
#include <string_view>

#include "fuzz_support.h"
#include "server/http_framing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the limits, so the 413/431 paths are reached with small inputs too.
  k2::FrameLimits limits;
  if (data[0] & 1) limits.max_head_bytes = 64 + data[0];
  if (data[0] & 2) limits.max_body_bytes = data[0] >> 2;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const k2::RequestFrame f = k2::scan_request(bytes, limits);
  using State = k2::RequestFrame::State;
  if (f.state == State::Invalid) {
    k2::fuzz::check(f.status == 400 || f.status == 413 || f.status == 431 || f.status == 501, "invalid status");
    k2::fuzz::check(!f.message.empty(), "invalid without a message");
  }
  if (f.state == State::Complete) {
    k2::fuzz::check(f.skip < f.head_end && f.head_end <= f.end && f.end <= bytes.size(), "frame offsets");
    if (f.expect_continue)
      k2::fuzz::check(f.skip <= f.expect_begin && f.expect_begin < f.expect_end && f.expect_end <= f.head_end,
                      "Expect header offsets");
    const k2::RequestFrame alone = k2::scan_request(bytes.substr(0, f.end), limits);
    k2::fuzz::check(alone.state == State::Complete && alone.end == f.end && alone.head_end == f.head_end,
                    "the request's own bytes frame differently");
  }
  if (f.state == State::Incomplete) k2::fuzz::check(f.end == 0, "incomplete frame with an end");
  return 0;
}
