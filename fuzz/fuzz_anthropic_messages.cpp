// libFuzzer target: Anthropic Messages request bodies (server/anthropic_messages.h) translated into the chat
// ApiRequest; the first byte picks /v1/messages or /v1/messages/count_tokens. Bodies are translated or
// refused with a 4xx ApiError, nothing else.
#include "fuzz_support.h"
#include "server/anthropic_messages.h"
#include "server/api_error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool count_tokens = data[0] & 1;
  const std::string body = k2::fuzz::as_string(data + 1, size - 1);
  try {
    const k2::ApiRequest r = k2::parse_messages_request(body, count_tokens);
    k2::fuzz::check(r.chat, "a messages request is a chat request");
    k2::fuzz::check(r.messages.is_array(), "translated messages");
    // The translated request is dumped into the prompt later: it must serialize.
    (void)r.messages.dump();
    (void)r.tools.dump();
  } catch (const k2::ApiError& e) {
    k2::fuzz::check(e.status() >= 400 && e.status() < 500, "ApiError status is not 4xx");
  }
  return 0;
}
