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

namespace {

ojson bytes_json(const std::string& b) {
  ojson out = ojson::array();
  for (unsigned char c : b) out.push_back(static_cast<int>(c));
  return out;
}

}  // namespace

ojson chat_logprobs_json(const std::vector<LogprobEntry>& entries) {
  ojson content = ojson::array();
  for (const LogprobEntry& e : entries) {
    ojson top = ojson::array();
    for (const LogprobAlternative& a : e.top)
      top.push_back(ojson{{"token", a.token}, {"logprob", a.logprob}, {"bytes", bytes_json(a.bytes)}});
    content.push_back(ojson{{"token", e.chosen.token}, {"logprob", e.chosen.logprob}, {"bytes", bytes_json(e.chosen.bytes)},
                            {"top_logprobs", std::move(top)}});
  }
  return ojson{{"content", std::move(content)}, {"refusal", nullptr}};
}

ojson completion_logprobs_json(const std::vector<LogprobEntry>& entries, size_t offset) {
  ojson tokens = ojson::array(), lps = ojson::array(), tops = ojson::array(), offsets = ojson::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(e.chosen.token);
    lps.push_back(e.has_logprob ? ojson(e.chosen.logprob) : ojson(nullptr));
    if (!e.has_logprob) {
      tops.push_back(nullptr);
    } else {
      ojson top = ojson::object();
      for (const LogprobAlternative& a : e.top)
        if (!top.contains(a.token)) top[a.token] = a.logprob;
      tops.push_back(std::move(top));
    }
    offsets.push_back(offset);
    offset += e.chosen.bytes.size();
  }
  return ojson{{"tokens", std::move(tokens)}, {"token_logprobs", std::move(lps)}, {"top_logprobs", std::move(tops)},
               {"text_offset", std::move(offsets)}};
}

ojson chat_completion_json(const ResponseMeta& m, const OutputDelta& message, const std::string& finish_reason,
                           const UsageCounts& u, ojson logprobs) {
  ojson msg{{"role", "assistant"}};
  std::vector<ToolCall> calls;
  merge_tool_deltas(calls, message.tool_calls);
  msg["content"] = message.content.empty() && !calls.empty() ? ojson(nullptr) : ojson(message.content);
  if (!message.reasoning.empty()) msg["reasoning_content"] = message.reasoning;
  if (!calls.empty()) msg["tool_calls"] = tool_calls_json(calls, false);
  ojson choice{{"index", 0}, {"message", std::move(msg)}, {"logprobs", std::move(logprobs)}, {"finish_reason", finish_reason}};
  return ojson{{"id", m.id},          {"object", "chat.completion"}, {"created", m.created},
               {"model", m.model},    {"choices", ojson::array({std::move(choice)})},
               {"usage", usage_json(u)}};
}

ojson text_completion_json(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                           const UsageCounts& u, ojson logprobs) {
  ojson choice{{"text", text}, {"index", 0}, {"logprobs", std::move(logprobs)}, {"finish_reason", finish_reason}};
  return ojson{{"id", m.id},       {"object", "text_completion"}, {"created", m.created},
               {"model", m.model}, {"choices", ojson::array({std::move(choice)})},
               {"usage", usage_json(u)}};
}

ojson chat_delta_json(const OutputDelta& d) {
  ojson delta = ojson::object();
  if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.tool_calls.empty()) {
    // As OpenAI streams calls: the first delta of a call has its id, type and name; later ones only
    // argument fragments, matched up by index.
    ojson calls = ojson::array();
    for (const ToolCallDelta& c : d.tool_calls) {
      ojson call{{"index", c.index}};
      if (!c.id.empty()) call["id"] = c.id;
      if (!c.name.empty()) {
        call["type"] = "function";
        call["function"] = {{"name", c.name}, {"arguments", c.arguments}};
      } else {
        call["function"] = {{"arguments", c.arguments}};
      }
      calls.push_back(std::move(call));
    }
    delta["tool_calls"] = std::move(calls);
  }
  return delta;
}

ojson chat_chunk_json(const ResponseMeta& m, ojson delta, const std::string& finish_reason, bool with_usage_field,
                      ojson logprobs) {
  ojson choice{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(logprobs)},
               {"finish_reason", finish_reason.empty() ? ojson(nullptr) : ojson(finish_reason)}};
  ojson chunk{{"id", m.id},       {"object", "chat.completion.chunk"}, {"created", m.created},
              {"model", m.model}, {"choices", ojson::array({std::move(choice)})}};
  if (with_usage_field) chunk["usage"] = nullptr;
  return chunk;
}

ojson text_chunk_json(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                      bool with_usage_field, ojson logprobs) {
  ojson choice{{"text", text}, {"index", 0}, {"logprobs", std::move(logprobs)},
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
