// Hugging Face tokenizer.json (byte-level BPE, the DeepSeek-V3 family): normalizer, pre-tokenizer
// chain and BPE model as the file declares them. Components we do not implement are refused by name
// instead of being approximated.
#include <nlohmann/json.hpp>

#include <fstream>
#include <variant>

#include "core/error.h"
#include "text/bpe.h"
#include "text/byte_level.h"
#include "text/regex.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace k2 {
namespace {

using nlohmann::json;

// tokenizers' ByteLevel pre-tokenizer regex (GPT-2).
constexpr const char* kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct SplitStep {
  std::unique_ptr<Regex> regex;  // null: no split (ByteLevel with use_regex false)
  bool prefix_space = false;     // ByteLevel add_prefix_space: prepend ' ' to each piece first
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
};

struct ReplaceStep {
  std::unique_ptr<Regex> regex;
  std::string content;
};
struct PrependStep {
  std::string prepend;
};
using NormalizeStep = std::variant<ReplaceStep, PrependStep>;

[[noreturn]] void unsupported(const std::string& path, const std::string& what) {
  throw InputError("'" + path + "': unsupported tokenizer.json component " + what +
                   " (k2mlx implements byte-level BPE with Split/ByteLevel/Digits pre-tokenizers)");
}

std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string pattern_of(const json& p, const std::string& path) {
  if (p.contains("Regex")) return translate_regex(p["Regex"].get<std::string>());
  if (p.contains("String")) return escape_literal(p["String"].get<std::string>());
  unsupported(path, "pattern " + p.dump());
}

Behavior behavior_of(const std::string& name, const std::string& path) {
  if (name == "Removed") return Behavior::Removed;
  if (name == "Isolated") return Behavior::Isolated;
  if (name == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::MergedWithNext;
  if (name == "Contiguous") return Behavior::Contiguous;
  unsupported(path, "split behavior " + name);
}

struct Part {
  std::size_t begin, end;
  bool match;
};

// tokenizers' SplitDelimiterBehavior applied to one piece (offsets into it).
std::vector<std::string> apply_split(const SplitStep& step, const std::string& input) {
  const std::string piece = step.prefix_space && input.front() != ' ' ? " " + input : input;
  if (!step.regex) return {piece};
  std::vector<Part> parts;
  std::size_t prev = 0;
  for (const Span& s : step.regex->find_all(piece)) {
    if (s.begin != prev) parts.push_back({prev, s.begin, false});
    parts.push_back({s.begin, s.end, true});
    prev = s.end;
  }
  if (prev != piece.size()) parts.push_back({prev, piece.size(), false});
  if (step.invert)
    for (Part& p : parts) p.match = !p.match;

  std::vector<Part> out;
  bool previous_match = false;
  switch (step.behavior) {
    case Behavior::Isolated:
      out = parts;
      break;
    case Behavior::Removed:
      for (const Part& p : parts)
        if (!p.match) out.push_back(p);
      break;
    case Behavior::MergedWithPrevious:
      for (const Part& p : parts) {
        if (p.match && !previous_match && !out.empty()) out.back().end = p.end;
        else out.push_back(p);
        previous_match = p.match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->match && !previous_match && !out.empty()) out.back().begin = it->begin;
        else out.push_back(*it);
        previous_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      break;
    case Behavior::Contiguous:
      for (std::size_t k = 0; k < parts.size(); ++k) {
        if (k > 0 && parts[k].match == previous_match) out.back().end = parts[k].end;
        else out.push_back(parts[k]);
        previous_match = parts[k].match;
      }
      break;
  }
  std::vector<std::string> pieces;
  for (const Part& p : out)
    if (p.end > p.begin) pieces.push_back(piece.substr(p.begin, p.end - p.begin));
  return pieces;
}

class HfBpeEncoder final : public PieceEncoder {
 public:
  HfBpeEncoder(const json& root, const std::string& path) {
    load_normalizer(root.value("normalizer", json()), path);
    load_pre_tokenizer(root.value("pre_tokenizer", json()), path);
    if (!byte_level_) unsupported(path, "pre_tokenizer without ByteLevel");
    load_model(root.at("model"), path);
  }

  void encode(std::string_view text, std::vector<int>& out) const override {
    std::string normalized(text);
    for (const NormalizeStep& step : normalizers_) {
      if (const auto* r = std::get_if<ReplaceStep>(&step)) {
        std::string next;
        std::size_t prev = 0;
        for (const Span& s : r->regex->find_all(normalized)) {
          next.append(normalized, prev, s.begin - prev);
          next += r->content;
          prev = s.end;
        }
        next.append(normalized, prev);
        normalized.swap(next);
      } else if (const auto* p = std::get_if<PrependStep>(&step)) {
        if (!normalized.empty()) normalized = p->prepend + normalized;
      }
    }
    if (normalized.empty()) return;
    std::vector<std::string> pieces{normalized};
    for (const SplitStep& step : splits_) {
      std::vector<std::string> next;
      for (const std::string& piece : pieces)
        for (std::string& s : apply_split(step, piece)) next.push_back(std::move(s));
      pieces.swap(next);
    }
    for (const std::string& piece : pieces) encode_word(byte_level::encode(piece), out);
  }

  std::vector<std::pair<std::string, int>> vocab_entries() const { return vocab_list_; }

 private:
  void load_normalizer(const json& n, const std::string& path) {
    if (n.is_null()) return;
    const std::string type = n.value("type", "");
    if (type == "Sequence") {
      for (const json& sub : n.at("normalizers")) load_normalizer(sub, path);
    } else if (type == "Replace") {
      normalizers_.emplace_back(ReplaceStep{std::make_unique<Regex>(pattern_of(n.at("pattern"), path)),
                                            n.at("content").get<std::string>()});
    } else if (type == "Prepend") {
      normalizers_.emplace_back(PrependStep{n.at("prepend").get<std::string>()});
    } else {
      unsupported(path, "normalizer " + type);
    }
  }

  void load_pre_tokenizer(const json& p, const std::string& path) {
    if (p.is_null()) return;
    const std::string type = p.value("type", "");
    if (byte_level_) unsupported(path, "pre-tokenizer " + type + " after ByteLevel");
    if (type == "Sequence") {
      for (const json& sub : p.at("pretokenizers")) load_pre_tokenizer(sub, path);
    } else if (type == "Split") {
      SplitStep s;
      s.regex = std::make_unique<Regex>(pattern_of(p.at("pattern"), path));
      s.behavior = behavior_of(p.at("behavior").get<std::string>(), path);
      s.invert = p.value("invert", false);
      splits_.push_back(std::move(s));
    } else if (type == "Digits") {
      SplitStep s;
      s.regex = std::make_unique<Regex>(p.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
      splits_.push_back(std::move(s));
    } else if (type == "ByteLevel") {
      byte_level_ = true;
      SplitStep s;
      s.prefix_space = p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) s.regex = std::make_unique<Regex>(translate_regex(kByteLevelPattern));
      splits_.push_back(std::move(s));
    } else {
      unsupported(path, "pre_tokenizer " + type);
    }
  }

  void load_model(const json& m, const std::string& path) {
    if (m.value("type", "BPE") != "BPE") unsupported(path, "model " + m.value("type", ""));
    if (!m.value("continuing_subword_prefix", json()).is_null() &&
        !m["continuing_subword_prefix"].get<std::string>().empty())
      unsupported(path, "BPE continuing_subword_prefix");
    if (!m.value("end_of_word_suffix", json()).is_null() && !m["end_of_word_suffix"].get<std::string>().empty())
      unsupported(path, "BPE end_of_word_suffix");
    if (m.value("byte_fallback", false)) unsupported(path, "BPE byte_fallback");
    ignore_merges_ = m.value("ignore_merges", false);
    for (const auto& [tok, id] : m.at("vocab").items()) {
      vocab_[tok] = id.get<int>();
      vocab_list_.emplace_back(tok, id.get<int>());
    }
    if (m.contains("unk_token") && m["unk_token"].is_string()) {
      auto it = vocab_.find(m["unk_token"].get<std::string>());
      if (it != vocab_.end()) unk_id_ = it->second;
    }
    int rank = 0;
    for (const json& mg : m.at("merges")) {
      std::string a, b;
      if (mg.is_string()) {
        const std::string s = mg.get<std::string>();
        const std::size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          throw InputError("'" + path + "': merge '" + s + "' is not two tokens separated by one space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = mg.at(0).get<std::string>();
        b = mg.at(1).get<std::string>();
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
      if (ia == vocab_.end() || ib == vocab_.end() || ic == vocab_.end())
        throw InputError("'" + path + "': merge '" + a + " " + b + "' uses a token missing from the vocab");
      merges_.add(ia->second, ib->second, rank++, ic->second);
    }
  }

  void encode_word(const std::string& word, std::vector<int>& out) const {
    if (ignore_merges_) {
      auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<int> ids;
    for (std::size_t i = 0; i < word.size();) {
      std::size_t len = 1;
      utf8::decode(word, i, &len);
      auto it = vocab_.find(word.substr(i, len));
      if (it != vocab_.end()) {
        ids.push_back(it->second);
      } else if (unk_id_ >= 0) {
        ids.push_back(unk_id_);
      }  // else: tokenizers drops a character it cannot represent
      i += len;
    }
    hf_merge_symbols(ids, merges_);
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::vector<NormalizeStep> normalizers_;
  std::vector<SplitStep> splits_;
  bool byte_level_ = false;
  bool ignore_merges_ = false;
  int unk_id_ = -1;
  std::unordered_map<std::string, int> vocab_;
  std::vector<std::pair<std::string, int>> vocab_list_;
  MergeTable merges_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& tokenizer_json_path) {
  std::ifstream f(tokenizer_json_path);
  if (!f) throw InputError("cannot open '" + tokenizer_json_path + "'");
  json root;
  try {
    root = json::parse(f);
  } catch (const json::exception& e) {
    throw InputError("'" + tokenizer_json_path + "' is not valid JSON: " + e.what());
  }
  std::unique_ptr<HfBpeEncoder> encoder;
  try {
    encoder = std::make_unique<HfBpeEncoder>(root, tokenizer_json_path);
  } catch (const json::exception& e) {
    throw InputError("'" + tokenizer_json_path + "' is malformed: " + e.what());
  }
  const auto decoder = root.value("decoder", json());
  if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel")
    unsupported(tokenizer_json_path, "decoder " + decoder.value("type", ""));

  std::vector<std::string> token_bytes;
  auto put = [&](int id, std::string bytes) {
    if (id < 0) throw InputError("'" + tokenizer_json_path + "': negative token id");
    if (static_cast<std::size_t>(id) >= token_bytes.size()) token_bytes.resize(static_cast<std::size_t>(id) + 1);
    token_bytes[id] = std::move(bytes);
  };
  for (const auto& [tok, id] : encoder->vocab_entries()) put(id, byte_level::decode_token(tok));
  std::vector<AddedToken> added;
  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    for (const json& t : root["added_tokens"]) {
      AddedToken a;
      try {
        a.id = t.at("id").get<int>();
        a.content = t.at("content").get<std::string>();
      } catch (const json::exception& e) {
        throw InputError("'" + tokenizer_json_path + "': malformed added token " + t.dump() + ": " + e.what());
      }
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.single_word = t.value("single_word", false);
      put(a.id, byte_level::decode_token(a.content));
      added.push_back(std::move(a));
    }
  }
  return std::make_unique<Tokenizer>(Tokenizer::Format::HuggingFace, std::move(token_bytes), std::move(added),
                                     std::move(encoder), /*kimi_chunking=*/false);
}

}  // namespace k2
