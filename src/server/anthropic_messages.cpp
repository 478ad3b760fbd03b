// Anthropic Messages API shapes, following docs.anthropic.com's Messages reference and its streaming
// page (event order, block types, stop reasons, error types). A request is rewritten into an OpenAI
// chat body and checked by parse_chat_request, so both APIs render and validate conversations alike.
#include "server/anthropic_messages.h"

#include <fmt/format.h>

#include "server/api_error.h"
#include "server/request_fields.h"
#include "text/py_json.h"

namespace k2 {
namespace {

using ojson = nlohmann::ordered_json;

using request_fields::bad;
using request_fields::field;

// Text of a string or an array of text blocks (system prompts, tool results).
std::string text_of(const ojson& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) bad(where, fmt::format("'{}' must be a string or an array of text blocks", where));
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const ojson& b = v[i];
    const std::string p = fmt::format("{}[{}]", where, i);
    if (!b.is_object() || b.value("type", "") != "text" || !b.contains("text") || !b["text"].is_string())
      bad(p, fmt::format("'{}' must be a text block ({{\"type\": \"text\", \"text\": ...}}); this server renders text only", p));
    if (!out.empty()) out += "\n";
    out += b["text"].get<std::string>();
  }
  return out;
}

// tool_use input as the argument text a template writes: Python's json.dumps, which is what the templates'
// own `tojson` and the OpenAI clients' json.dumps produce.
std::string arguments_text(const ojson& input) { return jinja::python_json_dumps(jinja::from_json(input), {}); }

// One Anthropic message -> OpenAI messages (tool results become "tool" messages before the user's text).
void translate_message(const ojson& m, size_t i, ojson& out) {
  const std::string p = fmt::format("messages[{}]", i);
  if (!m.is_object()) bad(p, fmt::format("'{}' must be an object", p));
  const ojson* role = field(m, "role");
  if (!role || !role->is_string() || (*role != "user" && *role != "assistant"))
    bad(p + ".role", fmt::format("'{}.role' must be \"user\" or \"assistant\"", p));
  const bool user = *role == "user";
  const ojson* content = field(m, "content");
  if (!content) bad(p + ".content", fmt::format("'{}.content' is required", p));
  if (content->is_string()) {
    out.push_back(ojson{{"role", *role}, {"content", *content}});
    return;
  }
  if (!content->is_array()) bad(p + ".content", fmt::format("'{}.content' must be a string or an array of blocks", p));
  std::string text, thinking;
  ojson calls = ojson::array();
  for (size_t k = 0; k < content->size(); ++k) {
    const ojson& b = (*content)[k];
    const std::string bp = fmt::format("{}.content[{}]", p, k);
    if (!b.is_object() || !b.contains("type") || !b["type"].is_string()) bad(bp, fmt::format("'{}' must be a block with a 'type'", bp));
    const std::string type = b["type"].get<std::string>();
    if (type == "text") {
      if (!b.contains("text") || !b["text"].is_string()) bad(bp + ".text", fmt::format("'{}.text' must be a string", bp));
      if (!text.empty()) text += "\n";
      text += b["text"].get<std::string>();
    } else if (type == "tool_result" && user) {
      const ojson* id = field(b, "tool_use_id");
      if (!id || !id->is_string()) bad(bp + ".tool_use_id", fmt::format("'{}.tool_use_id' must be a string", bp));
      std::string result = field(b, "content") ? text_of(b["content"], bp + ".content") : "";
      if (b.value("is_error", false)) result = "Error: " + result;
      out.push_back(ojson{{"role", "tool"}, {"tool_call_id", *id}, {"content", result}});
    } else if (type == "tool_use" && !user) {
      const ojson* id = field(b, "id");
      const ojson* name = field(b, "name");
      const ojson* input = field(b, "input");
      if (!id || !id->is_string()) bad(bp + ".id", fmt::format("'{}.id' must be a string", bp));
      if (!name || !name->is_string()) bad(bp + ".name", fmt::format("'{}.name' must be a string", bp));
      if (input && !input->is_object()) bad(bp + ".input", fmt::format("'{}.input' must be an object", bp));
      calls.push_back(ojson{{"id", *id}, {"type", "function"},
                            {"function", {{"name", *name}, {"arguments", arguments_text(input ? *input : ojson::object())}}}});
    } else if ((type == "thinking" || type == "redacted_thinking") && !user) {
      if (type == "thinking") {
        if (!b.contains("thinking") || !b["thinking"].is_string()) bad(bp + ".thinking", fmt::format("'{}.thinking' must be a string", bp));
        thinking += b["thinking"].get<std::string>();
      }
    } else {
      bad(bp + ".type", fmt::format("content block type '{}' in a{} message is not supported by this server (it renders "
                                    "text, tool_use, tool_result and thinking blocks)", type, user ? " user" : "n assistant"));
    }
  }
  if (user) {
    if (!text.empty() || out.empty() || out.back()["role"] != "tool") out.push_back(ojson{{"role", "user"}, {"content", text}});
    return;
  }
  ojson msg{{"role", "assistant"}, {"content", text.empty() && !calls.empty() ? ojson(nullptr) : ojson(text)}};
  if (!thinking.empty()) msg["reasoning_content"] = thinking;
  if (!calls.empty()) msg["tool_calls"] = std::move(calls);
  out.push_back(std::move(msg));
}

}  // namespace

ApiRequest parse_messages_request(const std::string& body, bool count_tokens) {
  ojson j;
  try {
    j = ojson::parse(body);
  } catch (const nlohmann::json::exception& e) {
    bad("", fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) bad("", "the request body must be a JSON object");
  ojson chat = ojson::object();
  if (const ojson* model = field(j, "model")) {
    if (!model->is_string()) bad("model", "'model' must be a string");
  } else {
    bad("model", "'model' is required");
  }
  ojson messages = ojson::array();
  if (const ojson* system = field(j, "system")) messages.push_back(ojson{{"role", "system"}, {"content", text_of(*system, "system")}});
  const ojson* msgs = field(j, "messages");
  if (!msgs || !msgs->is_array() || msgs->empty()) bad("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < msgs->size(); ++i) translate_message((*msgs)[i], i, messages);
  chat["messages"] = std::move(messages);

  if (!count_tokens) {
    const ojson* mt = field(j, "max_tokens");
    if (!mt) bad("max_tokens", "'max_tokens' is required");
    if (!mt->is_number_integer() || mt->get<long long>() < 1) bad("max_tokens", "'max_tokens' must be an integer >= 1");
    chat["max_tokens"] = *mt;
  }
  if (const ojson* t = field(j, "temperature")) {
    if (!t->is_number() || t->get<double>() < 0.0 || t->get<double>() > 1.0) bad("temperature", "'temperature' must be a number between 0 and 1");
    chat["temperature"] = *t;
  } else {
    chat["temperature"] = 1.0;  // Anthropic's default
  }
  for (const char* name : {"top_p", "top_k", "stream"})
    if (const ojson* v = field(j, name)) chat[name] = *v;
  if (const ojson* st = field(j, "stop_sequences")) {
    if (!st->is_array()) bad("stop_sequences", "'stop_sequences' must be an array of strings");
    for (const auto& s : *st)
      if (!s.is_string() || s.get<std::string>().empty()) bad("stop_sequences", "'stop_sequences' must hold non-empty strings");
  }

  if (const ojson* tools = field(j, "tools")) {
    if (!tools->is_array()) bad("tools", "'tools' must be an array");
    ojson out = ojson::array();
    for (size_t i = 0; i < tools->size(); ++i) {
      const ojson& t = (*tools)[i];
      const std::string p = fmt::format("tools[{}]", i);
      if (!t.is_object()) bad(p, fmt::format("'{}' must be an object", p));
      if (t.contains("type") && t["type"] != "custom")
        bad(p + ".type", fmt::format("'{}': server tools ('{}') are not supported by this server; declare client tools "
                                     "with name, description and input_schema", p, t["type"].dump()));
      const ojson* name = field(t, "name");
      if (!name || !name->is_string() || name->get<std::string>().empty()) bad(p + ".name", fmt::format("'{}.name' must be a non-empty string", p));
      const ojson* schema = field(t, "input_schema");
      if (!schema || !schema->is_object()) bad(p + ".input_schema", fmt::format("'{}.input_schema' must be an object", p));
      ojson fn{{"name", *name}};
      if (const ojson* d = field(t, "description")) fn["description"] = *d;
      fn["parameters"] = *schema;
      out.push_back(ojson{{"type", "function"}, {"function", std::move(fn)}});
    }
    if (!out.empty()) chat["tools"] = std::move(out);
  }
  bool parallel = true;
  if (const ojson* tc = field(j, "tool_choice")) {
    if (!tc->is_object() || !tc->contains("type") || !(*tc)["type"].is_string())
      bad("tool_choice", "'tool_choice' must be an object with a 'type' (auto, any, tool or none)");
    const std::string type = (*tc)["type"].get<std::string>();
    if (type == "auto") chat["tool_choice"] = "auto";
    else if (type == "any") chat["tool_choice"] = "required";
    else if (type == "none") chat["tool_choice"] = "none";
    else if (type == "tool") {
      const ojson* name = field(*tc, "name");
      if (!name || !name->is_string()) bad("tool_choice.name", "'tool_choice' of type 'tool' needs a 'name'");
      chat["tool_choice"] = ojson{{"type", "function"}, {"function", {{"name", *name}}}};
    } else {
      bad("tool_choice.type", fmt::format("'tool_choice.type' must be auto, any, tool or none; got '{}'", type));
    }
    parallel = !tc->value("disable_parallel_tool_use", false);
  }
  if ((chat.contains("tool_choice") && chat["tool_choice"] != "none" && chat["tool_choice"] != "auto") && !chat.contains("tools"))
    bad("tool_choice", "'tool_choice' requires a tool but 'tools' is empty");
  if (chat.contains("tool_choice") && chat["tool_choice"] == "auto" && !chat.contains("tools")) chat.erase("tool_choice");
  chat["parallel_tool_calls"] = parallel;

  if (const ojson* th = field(j, "thinking")) {
    if (!th->is_object() || !th->contains("type") || !(*th)["type"].is_string())
      bad("thinking", "'thinking' must be an object with a 'type' (enabled or disabled)");
    const std::string type = (*th)["type"].get<std::string>();
    if (type != "enabled" && type != "disabled" && type != "adaptive")
      bad("thinking.type", fmt::format("'thinking.type' must be enabled, disabled or adaptive; got '{}'", type));
    // The thinking switch of the templates that have one (DeepSeek-V3.1 reads `thinking`).
    chat["chat_template_kwargs"] = ojson{{"thinking", type != "disabled"}};
  }
  ApiRequest r = parse_chat_request(chat.dump());
  if (const ojson* st = field(j, "stop_sequences"))
    for (const auto& s : *st) r.stop.push_back(s.get<std::string>());  // any number (OpenAI's limit is 4)
  r.model = "";  // Anthropic clients name their own models; this server answers with its one model
  r.separate_reasoning = true;  // thinking always goes to thinking blocks
  return r;
}

std::string anthropic_stop_reason(const std::string& finish_reason, const std::string& matched_stop) {
  if (finish_reason == "length") return "max_tokens";
  if (finish_reason == "tool_calls") return "tool_use";
  if (!matched_stop.empty()) return "stop_sequence";
  return "end_turn";
}

ojson anthropic_usage_json(const UsageCounts& u) {
  return ojson{{"input_tokens", u.prompt_tokens - u.cached_tokens},
               {"output_tokens", u.completion_tokens},
               {"cache_creation_input_tokens", 0},
               {"cache_read_input_tokens", u.cached_tokens}};
}

ojson anthropic_message_json(const std::string& id, const std::string& model, const OutputDelta& answer,
                             const std::string& finish_reason, const std::string& matched_stop, const UsageCounts& u) {
  ojson content = ojson::array();
  if (!answer.reasoning.empty()) content.push_back(ojson{{"type", "thinking"}, {"thinking", answer.reasoning}, {"signature", ""}});
  if (!answer.content.empty()) content.push_back(ojson{{"type", "text"}, {"text", answer.content}});
  std::vector<ToolCall> calls;
  merge_tool_deltas(calls, answer.tool_calls);
  for (const ToolCall& c : calls) {
    // input must be an object: arguments that are not one (a model's malformed call) give {}.
    ojson input = ojson::object();
    if (c.arguments_are_json) {
      ojson parsed = ojson::parse(c.arguments);
      if (parsed.is_object()) input = std::move(parsed);
    }
    content.push_back(ojson{{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", std::move(input)}});
  }
  const std::string reason = anthropic_stop_reason(finish_reason, matched_stop);
  return ojson{{"id", id},
               {"type", "message"},
               {"role", "assistant"},
               {"model", model},
               {"content", std::move(content)},
               {"stop_reason", reason},
               {"stop_sequence", reason == "stop_sequence" ? ojson(matched_stop) : ojson(nullptr)},
               {"usage", anthropic_usage_json(u)}};
}

ojson anthropic_error_json(int status, const std::string& message) {
  const char* type = status == 401   ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status == 404 ? "not_found_error"
                     : status == 413 ? "request_too_large"
                     : status == 429 ? "rate_limit_error"
                     : status == 503 || status == 529 ? "overloaded_error"
                     : status >= 500 ? "api_error"
                                     : "invalid_request_error";
  return ojson{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

namespace {

std::string event(const char* name, const ojson& data) {
  return fmt::format("event: {}\ndata: {}\n\n", name, data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

std::string AnthropicEventStream::start(int input_tokens) {
  ojson message{{"id", id_},
                {"type", "message"},
                {"role", "assistant"},
                {"model", model_},
                {"content", ojson::array()},
                {"stop_reason", nullptr},
                {"stop_sequence", nullptr},
                {"usage", {{"input_tokens", input_tokens}, {"output_tokens", 0}}}};
  return event("message_start", ojson{{"type", "message_start"}, {"message", std::move(message)}}) +
         event("ping", ojson{{"type", "ping"}});
}

std::string AnthropicEventStream::open(Block kind, ojson content_block) {
  std::string out = close();
  block_ = kind;
  ++index_;
  return out + event("content_block_start", ojson{{"type", "content_block_start"}, {"index", index_},
                                                  {"content_block", std::move(content_block)}});
}

std::string AnthropicEventStream::close() {
  if (block_ == Block::None) return "";
  block_ = Block::None;
  return event("content_block_stop", ojson{{"type", "content_block_stop"}, {"index", index_}});
}

std::string AnthropicEventStream::update(const OutputDelta& d) {
  std::string out;
  auto delta = [&](ojson body) {
    out += event("content_block_delta", ojson{{"type", "content_block_delta"}, {"index", index_}, {"delta", std::move(body)}});
  };
  if (!d.reasoning.empty()) {
    if (block_ != Block::Thinking) out += open(Block::Thinking, ojson{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
    delta(ojson{{"type", "thinking_delta"}, {"thinking", d.reasoning}});
  }
  if (!d.content.empty()) {
    if (block_ != Block::Text) out += open(Block::Text, ojson{{"type", "text"}, {"text", ""}});
    delta(ojson{{"type", "text_delta"}, {"text", d.content}});
  }
  for (const ToolCallDelta& c : d.tool_calls) {
    if (block_ != Block::Tool || c.index != tool_call_) {
      out += open(Block::Tool, ojson{{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", ojson::object()}});
      tool_call_ = c.index;
    }
    if (!c.arguments.empty()) delta(ojson{{"type", "input_json_delta"}, {"partial_json", c.arguments}});
  }
  return out;
}

std::string AnthropicEventStream::finish(const std::string& finish_reason, const std::string& matched_stop,
                                         const UsageCounts& u) {
  const std::string reason = anthropic_stop_reason(finish_reason, matched_stop);
  return close() +
         event("message_delta",
               ojson{{"type", "message_delta"},
                     {"delta", {{"stop_reason", reason},
                                {"stop_sequence", reason == "stop_sequence" ? ojson(matched_stop) : ojson(nullptr)}}},
                     {"usage", anthropic_usage_json(u)}}) +
         event("message_stop", ojson{{"type", "message_stop"}});
}

std::string AnthropicEventStream::error_event(int status, const std::string& message) {
  return event("error", anthropic_error_json(status, message));
}

}  // namespace k2
