// The text side of the command line: loading a model folder's tokenizer and chat template,
// collecting stop ids from the tokenizer's special tokens, and streaming decoded text to stdout.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/chat_template.h"
#include "text/streaming_decoder.h"
#include "model/config.h"
#include "text/tokenizer.h"

namespace k2::cli {

struct TextModel;

// The ids that end generation, for every command (generate, chat, pipeline, serve): the checkpoint's eos ids
// (config.json + generation_config.json, see load_model_config) plus <|im_end|> / [EOS] / <｜end▁of▁sentence｜>
// when the tokenizer has them (`text` may be null: ids in, ids out).
std::vector<int> stop_tokens(const ModelConfig& config, const TextModel* text);

struct TextModel {
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;  // absent when the folder ships none

  // Loads the tokenizer (required) and the chat template (optional) of a model folder; template_file
  // (optional) replaces the folder's template.
  static TextModel load(const std::string& model_dir, const std::string& template_file = "");

  // A prompt as ids: the text itself, or (chat) a user turn after an optional system message, rendered
  // with the model's chat template including the generation prompt.
  std::vector<int> encode_prompt(const std::string& prompt, bool chat, const std::string& system) const;
  // The text encode_prompt tokenizes (what the model is fed, for --print-prompt).
  std::string render_prompt(const std::string& prompt, bool chat, const std::string& system) const;

  // Decodes ids, leaving out ids the tokenizer does not know (embedding rows beyond its vocabulary).
  std::string decode_known(const std::vector<int>& ids, bool skip_special = false) const;

  // Renders a conversation with the model's template (throws InputError when there is none).
  std::vector<int> encode_chat(const nlohmann::ordered_json& messages, bool add_generation_prompt = true) const;
  std::string render_chat(const nlohmann::ordered_json& messages, bool add_generation_prompt = true) const;
};

// Streams token text to stdout as complete UTF-8.
class TextPrinter {
 public:
  explicit TextPrinter(const Tokenizer& tokenizer)
      : decoder_(tokenizer, /*skip_special=*/true), vocab_size_(tokenizer.vocab_size()) {}
  void operator()(int id);
  void finish();
  const std::string& text() const { return text_; }

 private:
  StreamingDecoder decoder_;
  int vocab_size_;
  std::string text_;
};

// Streams generated tokens to stdout: as text when a tokenizer is given, else as space-separated ids.
class TokenOutput {
 public:
  explicit TokenOutput(const Tokenizer* tokenizer) {
    if (tokenizer) printer_.emplace(*tokenizer);
  }
  void operator()(int id);
  void finish();  // emits text held back for an incomplete UTF-8 character

 private:
  std::optional<TextPrinter> printer_;
};

}  // namespace k2::cli
