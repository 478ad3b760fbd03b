// OpenAI response bodies: chat.completion, chat.completion.chunk, text_completion, usage, errors and
// the model list, built as JSON from text deltas and counts. Wire format only; no I/O.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "server/completion_service.h"

namespace k2 {

struct ResponseMeta {
  std::string id;     // chatcmpl-… / cmpl-…
  long long created;  // unix seconds
  std::string model;
};

ResponseMeta new_response_meta(bool chat, const std::string& model);

nlohmann::ordered_json usage_json(const UsageCounts& u);
nlohmann::ordered_json tool_calls_json(const std::vector<ToolCall>& calls, bool streaming);

// A whole non-streamed answer.
// logprobs: null, or from chat_logprobs_json / completion_logprobs_json.
nlohmann::ordered_json chat_completion_json(const ResponseMeta& m, const OutputDelta& message,
                                            const std::string& finish_reason, const UsageCounts& u,
                                            nlohmann::ordered_json logprobs = nullptr);
nlohmann::ordered_json text_completion_json(const ResponseMeta& m, const std::string& text,
                                            const std::string& finish_reason, const UsageCounts& u,
                                            nlohmann::ordered_json logprobs = nullptr);

// Chat's {"content": [{token, logprob, bytes, top_logprobs}]}.
nlohmann::ordered_json chat_logprobs_json(const std::vector<LogprobEntry>& entries);
// Completions' {tokens, token_logprobs, top_logprobs, text_offset}; offsets count bytes from `offset`.
nlohmann::ordered_json completion_logprobs_json(const std::vector<LogprobEntry>& entries, size_t offset = 0);

// Streamed chunks. finish_reason empty = null. with_usage_field: "usage": null (include_usage was asked).
nlohmann::ordered_json chat_chunk_json(const ResponseMeta& m, nlohmann::ordered_json delta,
                                       const std::string& finish_reason, bool with_usage_field,
                                       nlohmann::ordered_json logprobs = nullptr);
nlohmann::ordered_json text_chunk_json(const ResponseMeta& m, const std::string& text,
                                       const std::string& finish_reason, bool with_usage_field,
                                       nlohmann::ordered_json logprobs = nullptr);
// The final usage-only chunk of a stream with include_usage (empty choices).
nlohmann::ordered_json usage_chunk_json(const ResponseMeta& m, bool chat, const UsageCounts& u);

// The delta object of one streamed chat update (reasoning_content / content / tool_calls).
nlohmann::ordered_json chat_delta_json(const OutputDelta& d);

nlohmann::ordered_json error_json(const std::string& message, const std::string& type, const std::string& param,
                                  const std::string& code);

}  // namespace k2
