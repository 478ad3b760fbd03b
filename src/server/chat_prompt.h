// The chat-request options that shape the rendered prompt: chat_template_kwargs over the server's
// defaults, continue_final_message (cut after the last message, as transformers' apply_chat_template
// does), and what the rendered text tells the output side (does it leave a <think> block open?).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace k2 {

// Template variables: the server's defaults with the request's chat_template_kwargs on top. Throws
// ApiError (400, param chat_template_kwargs) for names the server sets itself (messages, tools).
nlohmann::ordered_json merge_template_kwargs(const nlohmann::ordered_json& server_defaults,
                                             const nlohmann::ordered_json& request_kwargs);

// transformers' continue_final_message rule (render_jinja_template): the final message's content (its
// last text part when it is a list) gets a marker appended, the chat is rendered, and the text is cut at
// the marker (and right-stripped if the template swallowed the marker's trailing space). So the model
// continues that message. Throws ApiError (400) when there is no text to continue.
nlohmann::ordered_json mark_final_message(const nlohmann::ordered_json& messages);
// Throws ApiError (400) when the template did not write the marked message out.
std::string cut_at_final_message(const std::string& rendered, const nlohmann::ordered_json& messages);

// The rendered prompt ends inside an opened <think> block (DeepSeek-V3.1 with thinking on): the answer
// starts as reasoning and has no opening tag of its own.
bool prompt_opens_thinking(std::string_view rendered);

}  // namespace k2
