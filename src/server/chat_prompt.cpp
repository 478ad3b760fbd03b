// See chat_prompt.h. continue_final_message follows transformers' render_jinja_template
// (src/transformers/utils/chat_template_utils.py, v5): the same marker, the same cut.
#include "server/chat_prompt.h"

#include <fmt/format.h>

#include "server/api_error.h"

namespace k2 {

nlohmann::ordered_json merge_template_kwargs(const nlohmann::ordered_json& server_defaults,
                                             const nlohmann::ordered_json& request_kwargs) {
  nlohmann::ordered_json out = server_defaults.is_object() ? server_defaults : nlohmann::ordered_json::object();
  if (request_kwargs.is_null()) return out;
  if (!request_kwargs.is_object())
    throw ApiError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs", "invalid_request_error");
  for (const auto& [k, v] : request_kwargs.items()) {
    if (k == "messages" || k == "tools")
      throw ApiError(400, fmt::format("'chat_template_kwargs' may not set '{}' (it is the request's own field)", k),
                     "chat_template_kwargs", "invalid_request_error");
    out[k] = v;
  }
  return out;
}

namespace {

constexpr std::string_view kTag = "CONTINUE_FINAL_MESSAGE_TAG ";

[[noreturn]] void cannot_continue(const std::string& why) {
  throw ApiError(400, "continue_final_message: " + why, "continue_final_message", "invalid_request_error");
}

// The text that is continued: the content string, or the last text part of a list.
nlohmann::ordered_json* final_text(nlohmann::ordered_json& messages) {
  if (!messages.is_array() || messages.empty()) cannot_continue("there is no final message");
  auto& m = messages.back();
  if (!m.contains("content") || m["content"].is_null()) cannot_continue("the final message has no content to continue");
  auto& c = m["content"];
  if (c.is_string()) return &c;
  if (c.is_array())
    for (auto it = c.rbegin(); it != c.rend(); ++it)
      if (it->is_object() && it->contains("text") && (*it)["text"].is_string()) return &(*it)["text"];
  cannot_continue("the final message has no text to continue");
}

}  // namespace

nlohmann::ordered_json mark_final_message(const nlohmann::ordered_json& messages) {
  nlohmann::ordered_json out = messages;
  nlohmann::ordered_json* text = final_text(out);
  *text = text->get<std::string>() + std::string(kTag);
  return out;
}

std::string cut_at_final_message(const std::string& rendered, const nlohmann::ordered_json& messages) {
  nlohmann::ordered_json copy = messages;
  const std::string final_message = final_text(copy)->get<std::string>();
  constexpr const char* ws = " \t\n\r\f\v";
  const size_t b = final_message.find_first_not_of(ws);
  const std::string stripped =
      b == std::string::npos ? "" : final_message.substr(b, final_message.find_last_not_of(ws) - b + 1);
  const std::string_view tag = kTag.substr(0, kTag.size() - 1);
  const size_t loc = rendered.rfind(tag);
  if (rendered.find(stripped) == std::string::npos || loc == std::string::npos)
    cannot_continue("the chat template did not write the final message out (it may delete parts of it)");
  if (rendered.compare(loc, kTag.size(), kTag) == 0) return rendered.substr(0, loc);
  std::string cut = rendered.substr(0, loc);
  cut.erase(cut.find_last_not_of(ws) + 1);
  return cut;
}

bool prompt_opens_thinking(std::string_view rendered) {
  const size_t end = rendered.find_last_not_of(" \t\r\n");
  if (end == std::string_view::npos) return false;
  constexpr std::string_view open = "<think>";
  const std::string_view s = rendered.substr(0, end + 1);
  return s.size() >= open.size() && s.substr(s.size() - open.size()) == open;
}

}  // namespace k2
