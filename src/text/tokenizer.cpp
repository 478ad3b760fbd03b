// Format-independent parts of k2::Tokenizer: special-token splitting, Kimi's input chunking,
// decoding, lookups, and choosing a loader for a model folder.
#include "text/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "text/utf8.h"

namespace k2 {
namespace {

// tokenization_kimi.py encodes at most 400,000 characters per tiktoken call and cuts runs of more
// than 25,000 consecutive whitespace (or non-whitespace) characters; both are counted in code points
// and whitespace is Python's str.isspace().
constexpr std::size_t kKimiMaxEncodeChars = 400000;
constexpr std::size_t kKimiMaxConsecutiveChars = 25000;

// Appends Kimi's chunks of `text` (valid UTF-8) to out.
void kimi_chunks(std::string_view text, std::vector<std::string_view>& out) {
  // First the 400k-code-point windows.
  std::vector<std::string_view> windows;
  std::size_t start = 0, count = 0;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = 1;
    utf8::decode(text, i, &len);
    if (count == kKimiMaxEncodeChars) {
      windows.push_back(text.substr(start, i - start));
      start = i;
      count = 0;
    }
    ++count;
    i += len;
  }
  windows.push_back(text.substr(start));
  // Then each window is cut so no slice holds more than 25k consecutive same-class characters.
  for (std::string_view w : windows) {
    std::size_t slice_start = 0, run = 0;
    bool run_is_space = false;
    bool first = true;
    for (std::size_t i = 0; i < w.size();) {
      std::size_t len = 1;
      const bool space = utf8::python_isspace(utf8::decode(w, i, &len));
      if (first) {
        run_is_space = space;
        run = 1;
        first = false;
      } else if (space != run_is_space) {
        run = 1;
        run_is_space = space;
      } else if (++run > kKimiMaxConsecutiveChars) {
        out.push_back(w.substr(slice_start, i - slice_start));
        slice_start = i;
        run = 1;
      }
      i += len;
    }
    out.push_back(w.substr(slice_start));
  }
}

}  // namespace

Tokenizer::Tokenizer(Format format, std::vector<std::string> token_bytes, std::vector<AddedToken> specials,
                     std::unique_ptr<PieceEncoder> encoder, bool kimi_chunking)
    : format_(format),
      token_bytes_(std::move(token_bytes)),
      specials_(std::move(specials)),
      is_special_(token_bytes_.size(), 0),
      splitter_(specials_),
      encoder_(std::move(encoder)),
      kimi_chunking_(kimi_chunking) {
  for (const AddedToken& t : specials_) {
    if (t.id < 0 || t.id >= vocab_size()) {
      throw InputError("added token '" + t.content + "' has id " + std::to_string(t.id) +
                       ", outside the vocabulary of " + std::to_string(vocab_size()) + " ids");
    }
    is_special_[t.id] = t.special ? 1 : 0;
  }
}

void Tokenizer::encode_ordinary(std::string_view text, bool allow_special, std::vector<int>& out) const {
  for (const TextSegment& seg : splitter_.split(text, allow_special)) {
    if (seg.token >= 0) {
      out.push_back(seg.token);
    } else {
      encoder_->encode(seg.text, out);
    }
  }
}

std::vector<int> Tokenizer::encode(std::string_view text, bool allow_special) const {
  const std::string clean = utf8::sanitize(text);
  std::vector<int> ids;
  ids.reserve(clean.size() / 3 + 8);
  if (!kimi_chunking_) {
    encode_ordinary(clean, allow_special, ids);
    return ids;
  }
  std::vector<std::string_view> chunks;
  kimi_chunks(clean, chunks);
  for (std::string_view c : chunks) encode_ordinary(c, allow_special, ids);
  return ids;
}

const std::string& Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= vocab_size()) {
    throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                     std::to_string(vocab_size() - 1) + ")");
  }
  return token_bytes_[id];
}

std::string Tokenizer::decode(const std::vector<int>& ids, bool skip_special) const {
  std::string bytes;
  for (int id : ids) {
    const std::string& b = token_bytes(id);
    if (skip_special && is_special_[id]) continue;
    bytes += b;
  }
  return utf8::sanitize(bytes);
}

std::string Tokenizer::id_to_piece(int id) const { return utf8::sanitize(token_bytes(id)); }

std::optional<int> Tokenizer::special_token_id(std::string_view name) const {
  for (const AddedToken& t : specials_)
    if (t.content == name) return t.id;
  return std::nullopt;
}

bool Tokenizer::is_special(int id) const { return id >= 0 && id < vocab_size() && is_special_[id]; }

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  if (!fs::is_directory(dir)) throw InputError("model folder '" + model_dir + "' does not exist");
  if (fs::exists(dir / "tiktoken.model")) {
    return load_tiktoken_tokenizer((dir / "tiktoken.model").string(), (dir / "tokenizer_config.json").string());
  }
  if (fs::exists(dir / "tokenizer.json")) return load_hf_tokenizer((dir / "tokenizer.json").string());
  throw InputError("model folder '" + model_dir +
                   "' has no tokenizer: expected tiktoken.model (Kimi) or tokenizer.json (Hugging Face)");
}

}  // namespace k2
