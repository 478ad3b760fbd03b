// Chat prompt rendering: the model folder's own Jinja chat template, rendered by k2mlx's Jinja
// interpreter with the variables transformers' apply_chat_template passes. Kimi folders also get
// tokenization_kimi.py's deep key sort of `tools`.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace k2 {

struct ChatRenderOptions {
  nlohmann::ordered_json tools = nullptr;  // null or an array of tool declarations (OpenAI format)
  bool add_generation_prompt = true;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // more template variables, e.g. {"thinking": true}
};

class ChatTemplate {
 public:
  // source: the Jinja text. special_tokens: bos_token / eos_token / unk_token / pad_token strings
  // made visible to the template. sort_tool_keys: deep-sort dict keys of tools (Kimi).
  ChatTemplate(std::string source, nlohmann::ordered_json special_tokens, bool sort_tool_keys);

  // messages: array of {role, content (string | array of parts | null), name?, tool_calls?,
  // tool_call_id?, reasoning_content?}. Throws k2::InputError (jinja::TemplateError) where jinja2
  // would raise.
  std::string render(const nlohmann::ordered_json& messages, const ChatRenderOptions& options = {}) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  nlohmann::ordered_json special_tokens_;
  bool sort_tool_keys_;
  std::shared_ptr<const void> compiled_;  // jinja::Template
};

// The template a model folder ships: `chat_template` in tokenizer_config.json (a string, or the
// entry named "default" of a list), else chat_template.jinja. Throws k2::InputError if there is none.
// template_file, when given, replaces the folder's template text (special tokens still come from the folder).
ChatTemplate load_chat_template(const std::string& model_dir, const std::string& template_file = "");

// tokenization_kimi.py's deep_sort_dict: every object's keys sorted, recursively through arrays.
nlohmann::ordered_json deep_sort_keys(const nlohmann::ordered_json& j);

}  // namespace k2
