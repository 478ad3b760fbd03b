// Tokenizer / template loading and text streaming for the CLI commands.
#include "text_io.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "core/error.h"

namespace k2::cli {

TextModel TextModel::load(const std::string& model_dir, const std::string& template_file) {
  TextModel t;
  t.tokenizer = load_tokenizer(model_dir);
  const auto dir = std::filesystem::path(model_dir);
  bool has_template = !template_file.empty() || std::filesystem::exists(dir / "chat_template.jinja");
  if (!has_template && std::filesystem::exists(dir / "tokenizer_config.json")) {
    try {
      std::ifstream in(dir / "tokenizer_config.json");
      has_template = nlohmann::json::parse(in).contains("chat_template");
    } catch (const nlohmann::json::exception&) {
      has_template = false;
    }
  }
  if (has_template) t.chat_template = load_chat_template(model_dir, template_file);
  return t;
}

std::vector<int> stop_tokens(const ModelConfig& config, const TextModel* text) {
  std::vector<int> out = config.eos_token_ids;
  if (text)
    for (const char* name : {"<|im_end|>", "[EOS]", "<｜end▁of▁sentence｜>"})
      if (auto id = text->tokenizer->special_token_id(name)) out.push_back(*id);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string TextModel::decode_known(const std::vector<int>& ids, bool skip_special) const {
  std::vector<int> known;
  for (int id : ids)
    if (id >= 0 && id < tokenizer->vocab_size()) known.push_back(id);
  return tokenizer->decode(known, skip_special);
}

std::string TextModel::render_chat(const nlohmann::ordered_json& messages, bool add_generation_prompt) const {
  if (!chat_template)
    throw InputError("the model folder has no chat template (chat_template in tokenizer_config.json or "
                     "chat_template.jinja)");
  ChatRenderOptions o;
  o.add_generation_prompt = add_generation_prompt;
  return chat_template->render(messages, o);
}

std::vector<int> TextModel::encode_chat(const nlohmann::ordered_json& messages, bool add_generation_prompt) const {
  return tokenizer->encode(render_chat(messages, add_generation_prompt), /*allow_special=*/true);
}

std::string TextModel::render_prompt(const std::string& prompt, bool chat, const std::string& system) const {
  if (!chat) return prompt;
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  messages.push_back({{"role", "user"}, {"content", prompt}});
  return render_chat(messages);
}

std::vector<int> TextModel::encode_prompt(const std::string& prompt, bool chat, const std::string& system) const {
  return tokenizer->encode(render_prompt(prompt, chat, system), /*allow_special=*/true);
}

void TextPrinter::operator()(int id) {
  // Embedding tables can have more rows than the tokenizer has tokens (DeepSeek-V3: 129,280 vs
  // ~128,800); such an id has no text.
  if (id < 0 || id >= vocab_size_) return;
  const std::string piece = decoder_.push(id);
  if (piece.empty()) return;
  text_ += piece;
  std::fwrite(piece.data(), 1, piece.size(), stdout);
  std::fflush(stdout);
}

void TextPrinter::finish() {
  const std::string rest = decoder_.flush();
  text_ += rest;
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fflush(stdout);
}

void TokenOutput::operator()(int id) {
  if (printer_) {
    (*printer_)(id);
    return;
  }
  fmt::print("{} ", id);
  std::fflush(stdout);
}

void TokenOutput::finish() {
  if (printer_) printer_->finish();
}

}  // namespace k2::cli
