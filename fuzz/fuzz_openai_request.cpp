// libFuzzer target: OpenAI request bodies (server/openai_request.h), chat or completions by the first byte.
// A body is either parsed or refused with a 4xx ApiError; any other exception would be a 500, and
// libFuzzer reports it. Accepted requests must hold what the routes rely on.
#include "fuzz_support.h"
#include "server/api_error.h"
#include "server/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool chat = data[0] & 1;
  const std::string body = k2::fuzz::as_string(data + 1, size - 1);
  try {
    const k2::ApiRequest r = chat ? k2::parse_chat_request(body) : k2::parse_completion_request(body);
    k2::fuzz::check(r.chat == chat, "request kind");
    if (chat) k2::fuzz::check(r.messages.is_array() && !r.messages.empty(), "chat messages");
    if (r.prompt_ids)
      for (int id : *r.prompt_ids) k2::fuzz::check(id >= 0, "negative prompt id accepted");
    if (r.max_tokens) k2::fuzz::check(*r.max_tokens >= 0, "negative max_tokens accepted");
  } catch (const k2::ApiError& e) {
    k2::fuzz::check(e.status() >= 400 && e.status() < 500, "ApiError status is not 4xx");
  }
  return 0;
}
