// JSON shapes follow the OpenAI API reference for chat completions (including streamed chunks and
// stream_options.include_usage), legacy completions, and errors; reasoning goes in reasoning_content.
#include "server/openai_response.h"

#include <chrono>
#include <random>

#include <fmt/format.h>

namespace k2 {

using ojson = nlohmann::ordered_json;

ResponseMeta new_response_meta(bool chat, const std::string& model) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return ResponseMeta{fmt::format("{}-{:016x}", chat ? "chatcmpl" : "cmpl", rng()),
                      std::chrono::duration_cast<std::chrono::seconds>(now).count(), model};
}

ojson usage_json(const UsageCounts& u) {
  return ojson{{"prompt_tokens", u.prompt_tokens},
               {"completion_tokens", u.completion_tokens},
               {"total_tokens", u.prompt_tokens + u.completion_tokens},
               {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

ojson tool_calls_json(const std::vector<ToolCall>& calls, bool streaming) {
  ojson out = ojson::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    const ToolCall& c = calls[i];
    ojson call;
    if (streaming) call["index"] = i;
    // Kimi's ids (functions.NAME:IDX) are what its chat template expects back as tool_call_id.
    call["id"] = c.id.empty() ? fmt::format("call_{}", i) : c.id;
    call["type"] = "function";
    call["function"] = {{"name", c.name}, {"arguments", c.arguments}};
    out.push_back(std::move(call));
  }
  return out;
}

ojson chat_completion_json(const ResponseMeta& m, const OutputDelta& message, const std::string& finish_reason,
                           const UsageCounts& u) {
  ojson msg{{"role", "assistant"}};
  msg["content"] = message.content.empty() && !message.tool_calls.empty() ? ojson(nullptr) : ojson(message.content);
  if (!message.reasoning.empty()) msg["reasoning_content"] = message.reasoning;
  if (!message.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(message.tool_calls, false);
  ojson choice{{"index", 0}, {"message", std::move(msg)}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  return ojson{{"id", m.id},          {"object", "chat.completion"}, {"created", m.created},
               {"model", m.model},    {"choices", ojson::array({std::move(choice)})},
               {"usage", usage_json(u)}};
}

ojson text_completion_json(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                           const UsageCounts& u) {
  ojson choice{{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  return ojson{{"id", m.id},       {"object", "text_completion"}, {"created", m.created},
               {"model", m.model}, {"choices", ojson::array({std::move(choice)})},
               {"usage", usage_json(u)}};
}

ojson chat_delta_json(const OutputDelta& d, int first_tool_index) {
  ojson delta = ojson::object();
  if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.tool_calls.empty()) {
    ojson calls = tool_calls_json(d.tool_calls, true);
    for (auto& c : calls) c["index"] = c["index"].get<int>() + first_tool_index;
    delta["tool_calls"] = std::move(calls);
  }
  return delta;
}

ojson chat_chunk_json(const ResponseMeta& m, ojson delta, const std::string& finish_reason, bool with_usage_field) {
  ojson choice{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr},
               {"finish_reason", finish_reason.empty() ? ojson(nullptr) : ojson(finish_reason)}};
  ojson chunk{{"id", m.id},       {"object", "chat.completion.chunk"}, {"created", m.created},
              {"model", m.model}, {"choices", ojson::array({std::move(choice)})}};
  if (with_usage_field) chunk["usage"] = nullptr;
  return chunk;
}

ojson text_chunk_json(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                      bool with_usage_field) {
  ojson choice{{"text", text}, {"index", 0}, {"logprobs", nullptr},
               {"finish_reason", finish_reason.empty() ? ojson(nullptr) : ojson(finish_reason)}};
  ojson chunk{{"id", m.id},       {"object", "text_completion"}, {"created", m.created},
              {"model", m.model}, {"choices", ojson::array({std::move(choice)})}};
  if (with_usage_field) chunk["usage"] = nullptr;
  return chunk;
}

ojson usage_chunk_json(const ResponseMeta& m, bool chat, const UsageCounts& u) {
  return ojson{{"id", m.id},       {"object", chat ? "chat.completion.chunk" : "text_completion"},
               {"created", m.created}, {"model", m.model}, {"choices", ojson::array()}, {"usage", usage_json(u)}};
}

ojson error_json(const std::string& message, const std::string& type, const std::string& param, const std::string& code) {
  return ojson{{"error",
                {{"message", message},
                 {"type", type},
                 {"param", param.empty() ? ojson(nullptr) : ojson(param)},
                 {"code", code.empty() ? ojson(nullptr) : ojson(code)}}}};
}

}  // namespace k2
