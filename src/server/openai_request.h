// OpenAI request bodies (chat completions, completions) parsed and type-checked into ApiRequest.
// Every wrong field becomes an ApiError naming the field, what was expected and what was found.
// No tokenization here: limits that need token counts are checked in completion_service.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace k2 {

enum class ToolChoice { None, Auto, Required, Named };

struct ApiRequest {
  bool chat = true;  // /v1/chat/completions, else /v1/completions
  std::string model;  // empty = the served model
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // chat
  nlohmann::ordered_json messages;           // array, validated
  nlohmann::ordered_json tools = nullptr;    // null or array of {"type":"function","function":{...}}
  ToolChoice tool_choice = ToolChoice::Auto;
  std::string tool_name;                     // ToolChoice::Named
  bool parallel_tool_calls = true;           // false: at most one call per answer
  // chat template options (vLLM's names)
  std::optional<bool> add_generation_prompt;  // default true (false with continue_final_message)
  bool continue_final_message = false;        // the answer continues the last message
  nlohmann::ordered_json chat_template_kwargs = nullptr;  // null or an object of template variables
  std::optional<bool> separate_reasoning;     // thinking in reasoning_content (default: the server's setting)
  // completions
  std::string prompt;                        // text prompt
  std::optional<std::vector<int>> prompt_ids;  // or token ids
  bool echo = false;
  // both
  int logprobs = -1;  // >= 0: return each token's log-probability with this many alternatives (chat: top_logprobs)
  std::optional<int> max_tokens;
  SamplingParams sampling;
  std::vector<std::string> stop;
};

// body: the raw HTTP body. Throws ApiError (400) for malformed JSON and wrong or out-of-range fields.
ApiRequest parse_chat_request(const std::string& body);
ApiRequest parse_completion_request(const std::string& body);

}  // namespace k2
