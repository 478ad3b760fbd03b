// k2::Tokenizer: text <-> token ids for Kimi-K2 (tiktoken.model + tokenizer_config.json) and the
// DeepSeek-V3 family (Hugging Face tokenizer.json, byte-level BPE). Owns the vocabulary, the special
// tokens and decoding; the format-specific text -> ids step lives behind PieceEncoder.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/added_tokens.h"

namespace k2 {

// Encodes ordinary text (no special tokens inside) into ids; one implementation per file format.
class PieceEncoder {
 public:
  virtual ~PieceEncoder() = default;
  virtual void encode(std::string_view text, std::vector<int>& out) const = 0;
};

class Tokenizer {
 public:
  enum class Format { Tiktoken, HuggingFace };

  // token_bytes[id] = what decoding the id produces (empty string for unused ids);
  // `specials` lists the added/special tokens, which must be a subset of those ids.
  Tokenizer(Format format, std::vector<std::string> token_bytes, std::vector<AddedToken> specials,
            std::unique_ptr<PieceEncoder> encoder, bool kimi_chunking);

  // Text (any bytes; invalid UTF-8 is first replaced by U+FFFD as Python's decode("replace") does)
  // to ids. allow_special: literal special-token strings in the text become their control ids
  // (tiktoken allowed_special="all"); otherwise they are encoded as ordinary text.
  std::vector<int> encode(std::string_view text, bool allow_special = true) const;

  // Ids to text; invalid UTF-8 in the concatenated bytes becomes U+FFFD. Special tokens are rendered
  // by name unless skip_special. Throws k2::InputError for ids outside the vocabulary.
  std::string decode(const std::vector<int>& ids, bool skip_special = false) const;

  // Raw bytes of one token (may be part of a UTF-8 sequence). Throws for out-of-range ids.
  const std::string& token_bytes(int id) const;
  // Human-readable piece: the special token's name, or the token's bytes with invalid UTF-8
  // shown as U+FFFD.
  std::string id_to_piece(int id) const;

  // Id of a special / added token by its literal text (e.g. "<|im_end|>").
  std::optional<int> special_token_id(std::string_view name) const;
  bool is_special(int id) const;
  const std::vector<AddedToken>& special_tokens() const { return specials_; }

  int vocab_size() const { return static_cast<int>(token_bytes_.size()); }
  Format format() const { return format_; }

 private:
  void encode_ordinary(std::string_view text, bool allow_special, std::vector<int>& out) const;

  Format format_;
  std::vector<std::string> token_bytes_;
  std::vector<AddedToken> specials_;
  std::vector<char> is_special_;  // per id
  AddedTokenSplitter splitter_;
  std::unique_ptr<PieceEncoder> encoder_;
  bool kimi_chunking_;
};

// Loads the tokenizer of a model folder: tiktoken.model (+ tokenizer_config.json) if present, else
// tokenizer.json. Throws k2::InputError naming the folder if it has neither or a file is malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);

// The format-specific loaders load_tokenizer() dispatches to.
std::unique_ptr<Tokenizer> load_tiktoken_tokenizer(const std::string& tiktoken_model_path,
                                                   const std::string& tokenizer_config_path);
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& tokenizer_json_path);

}  // namespace k2
