// tiktoken-format BPE: rank file parsing, Kimi's special-token block from tokenizer_config.json,
// and the regex + lowest-rank-merge encoder (tiktoken's CoreBPE semantics).
#include "text/tiktoken_tokenizer.h"

#include <nlohmann/json.hpp>

#include <array>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "text/bpe.h"
#include "text/regex.h"

namespace k2 {
namespace {

// Kimi-K2: 163,584 regular ranks followed by 256 reserved special ids (tokenization_kimi.py,
// num_reserved_special_tokens = 256; the model's embedding has 163,840 rows).
constexpr int kNumReservedSpecialTokens = 256;

std::string base64_decode(std::string_view in, const std::string& where) {
  static const std::array<int, 256> table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
    return t;
  }();
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = table[static_cast<unsigned char>(c)];
    if (v < 0) throw InputError(where + ": invalid base64 character '" + std::string(1, c) + "'");
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return out;
}

class TiktokenEncoder final : public PieceEncoder {
 public:
  TiktokenEncoder(const std::vector<std::string>& ranks, std::string_view pat_str)
      : regex_(translate_regex(pat_str)) {
    for (std::size_t r = 0; r < ranks.size(); ++r)
      if (!ranks[r].empty()) ranks_.add(ranks[r], static_cast<int>(r));
  }
  void encode(std::string_view text, std::vector<int>& out) const override {
    for (const Span& s : regex_.find_all(text)) tiktoken_encode_piece(text.substr(s.begin, s.end - s.begin), ranks_, out);
  }

 private:
  Regex regex_;
  RankTable ranks_;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::string_view kimi_pat_str() {
  static const std::string pat =
      R"([\p{Han}]+)"
      "|"
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
      "|"
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
      "|"
      R"(\p{N}{1,3})"
      "|"
      R"( ?[^\s\p{L}\p{N}]+[\r\n]*)"
      "|"
      R"(\s*[\r\n]+)"
      "|"
      R"(\s+(?!\S))"
      "|"
      R"(\s+)";
  return pat;
}

std::vector<std::string> read_tiktoken_ranks(const std::string& path) {
  const std::string data = read_file(path);
  std::vector<std::string> ranks;
  std::size_t line_no = 0;
  for (std::size_t pos = 0; pos < data.size();) {
    std::size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) eol = data.size();
    std::string_view line(data.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const std::size_t sp = line.find(' ');
    const std::string where = path + ":" + std::to_string(line_no);
    if (sp == std::string_view::npos) throw InputError(where + ": expected '<base64> <rank>', found '" + std::string(line) + "'");
    long long rank = -1;
    try {
      std::size_t used = 0;
      const std::string num(line.substr(sp + 1));
      rank = std::stoll(num, &used);
      if (used != num.size()) rank = -1;
    } catch (const std::exception&) {
      rank = -1;
    }
    if (rank < 0 || rank > (1 << 30)) throw InputError(where + ": invalid rank '" + std::string(line.substr(sp + 1)) + "'");
    std::string bytes = base64_decode(line.substr(0, sp), where);
    if (bytes.empty()) throw InputError(where + ": empty token");
    if (static_cast<std::size_t>(rank) >= ranks.size()) ranks.resize(static_cast<std::size_t>(rank) + 1);
    if (!ranks[rank].empty()) throw InputError(where + ": rank " + std::to_string(rank) + " appears twice");
    ranks[rank] = std::move(bytes);
  }
  if (ranks.empty()) throw InputError("'" + path + "' holds no tokens");
  return ranks;
}

std::unique_ptr<Tokenizer> make_tiktoken_tokenizer(std::vector<std::string> ranks, std::string_view pat_str,
                                                   std::vector<AddedToken> specials, bool kimi_chunking) {
  auto encoder = std::make_unique<TiktokenEncoder>(ranks, pat_str);
  std::size_t n = ranks.size();
  for (const AddedToken& t : specials) n = std::max(n, static_cast<std::size_t>(t.id) + 1);
  ranks.resize(n);
  for (const AddedToken& t : specials) ranks[t.id] = t.content;
  return std::make_unique<Tokenizer>(Tokenizer::Format::Tiktoken, std::move(ranks), std::move(specials),
                                     std::move(encoder), kimi_chunking);
}

std::unique_ptr<Tokenizer> load_tiktoken_tokenizer(const std::string& tiktoken_model_path,
                                                   const std::string& tokenizer_config_path) {
  std::vector<std::string> ranks = read_tiktoken_ranks(tiktoken_model_path);
  const int base = static_cast<int>(ranks.size());
  // Names from added_tokens_decoder; unnamed reserved ids are <|reserved_token_{id}|>.
  std::vector<std::string> names(kNumReservedSpecialTokens);
  for (int i = 0; i < kNumReservedSpecialTokens; ++i) names[i] = "<|reserved_token_" + std::to_string(base + i) + "|>";
  std::ifstream cfg_file(tokenizer_config_path);
  if (cfg_file) {
    nlohmann::json cfg;
    try {
      cfg = nlohmann::json::parse(cfg_file);
    } catch (const nlohmann::json::exception& e) {
      throw InputError("'" + tokenizer_config_path + "' is not valid JSON: " + e.what());
    }
    if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
      for (const auto& [key, val] : cfg["added_tokens_decoder"].items()) {
        int id = -1;
        try {
          id = std::stoi(key);
        } catch (const std::exception&) {
        }
        if (!val.is_object() || !val.contains("content") || !val["content"].is_string()) {
          throw InputError("'" + tokenizer_config_path + "': added_tokens_decoder[\"" + key + "\"] has no string 'content'");
        }
        if (id < base || id >= base + kNumReservedSpecialTokens) {
          throw InputError("'" + tokenizer_config_path + "': added token id " + key + " is outside the reserved block " +
                           std::to_string(base) + ".." + std::to_string(base + kNumReservedSpecialTokens - 1));
        }
        names[id - base] = val["content"].get<std::string>();
      }
    }
  }
  std::vector<AddedToken> specials;
  for (int i = 0; i < kNumReservedSpecialTokens; ++i) {
    AddedToken t;
    t.content = names[i];
    t.id = base + i;
    specials.push_back(std::move(t));
  }
  return make_tiktoken_tokenizer(std::move(ranks), kimi_pat_str(), std::move(specials), /*kimi_chunking=*/true);
}

}  // namespace k2
