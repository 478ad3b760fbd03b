// ChatTemplate: loading a model folder's template and rendering conversations (see chat_template.h).
#include "text/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "text/jinja_eval.h"

namespace k2 {
namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw InputError("cannot open '" + p.string() + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A special token in tokenizer_config.json is a string or an AddedToken object with "content".
std::optional<std::string> token_string(const nlohmann::ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

namespace {

nlohmann::ordered_json deep_sort_keys_at(const nlohmann::ordered_json& j, int depth) {
  if ((j.is_object() || j.is_array()) && depth >= jinja::kMaxJsonNesting)
    throw InputError("tool declarations are nested more than " + std::to_string(jinja::kMaxJsonNesting) + " levels deep");
  if (j.is_object()) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    for (const std::string& k : keys) out[k] = deep_sort_keys_at(j.at(k), depth + 1);
    return out;
  }
  if (j.is_array()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& v : j) out.push_back(deep_sort_keys_at(v, depth + 1));
    return out;
  }
  return j;
}

}  // namespace

nlohmann::ordered_json deep_sort_keys(const nlohmann::ordered_json& j) { return deep_sort_keys_at(j, 0); }

ChatTemplate::ChatTemplate(std::string source, nlohmann::ordered_json special_tokens, bool sort_tool_keys)
    : source_(std::move(source)), special_tokens_(std::move(special_tokens)), sort_tool_keys_(sort_tool_keys) {
  compiled_ = std::make_shared<jinja::Template>(source_);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, const ChatRenderOptions& options) const {
  if (!messages.is_array()) throw InputError("chat messages must be a JSON array, found " + std::string(messages.type_name()));
  jinja::Dict vars;
  if (special_tokens_.is_object())
    for (const auto& [k, v] : special_tokens_.items()) vars.set(k, jinja::from_json(v));
  vars.set("messages", jinja::from_json(messages));
  const nlohmann::ordered_json tools = sort_tool_keys_ ? deep_sort_keys(options.tools) : options.tools;
  vars.set("tools", jinja::from_json(tools));
  vars.set("documents", jinja::Value::none());
  vars.set("add_generation_prompt", jinja::Value::boolean(options.add_generation_prompt));
  if (options.extra.is_object())
    for (const auto& [k, v] : options.extra.items()) vars.set(k, jinja::from_json(v));
  return static_cast<const jinja::Template*>(compiled_.get())->render(vars);
}

ChatTemplate load_chat_template(const std::string& model_dir, const std::string& template_file) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  if (fs::exists(dir / "tokenizer_config.json")) {
    try {
      config = nlohmann::ordered_json::parse(read_text(dir / "tokenizer_config.json"));
    } catch (const nlohmann::json::exception& e) {
      throw InputError("'" + (dir / "tokenizer_config.json").string() + "' is not valid JSON: " + e.what());
    }
  }
  std::optional<std::string> source;
  if (!template_file.empty()) {
    if (!fs::is_regular_file(template_file)) throw InputError("chat template file '" + template_file + "' does not exist");
    source = read_text(template_file);
  } else if (config.contains("chat_template")) {
    const auto& ct = config["chat_template"];
    if (ct.is_string()) {
      source = ct.get<std::string>();
    } else if (ct.is_array()) {
      for (const auto& entry : ct)
        if (entry.value("name", "") == "default" && entry.contains("template")) source = entry["template"].get<std::string>();
    }
  }
  if (!source && fs::exists(dir / "chat_template.jinja")) source = read_text(dir / "chat_template.jinja");
  if (!source) {
    throw InputError("model folder '" + model_dir +
                     "' has no chat template (neither chat_template in tokenizer_config.json nor chat_template.jinja)");
  }
  nlohmann::ordered_json specials = nlohmann::ordered_json::object();
  for (const char* name : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (config.contains(name)) {
      if (auto s = token_string(config[name])) specials[name] = *s;
    }
  }
  // Kimi's tokenizer class (tiktoken.model) deep-sorts tool declarations before rendering.
  const bool kimi = fs::exists(dir / "tiktoken.model");
  return ChatTemplate(*source, specials, kimi);
}

}  // namespace k2
