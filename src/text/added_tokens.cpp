// Trie-based splitting of text at added / special tokens (see added_tokens.h).
#include "text/added_tokens.h"

#include <algorithm>

#include "text/utf8.h"

namespace k2 {
namespace {

// Rust's char::is_whitespace (Unicode White_Space), used by tokenizers for lstrip / rstrip.
bool is_unicode_white_space(char32_t c) { return utf8::python_isspace(c) && !(c >= 0x1C && c <= 0x1F); }

bool is_word_char(char32_t c) {
  // tokenizers' single_word check uses char::is_alphanumeric() or '_' ; ASCII approximation plus
  // any non-ASCII letter-like code point counts as a word character.
  return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

}  // namespace

AddedTokenSplitter::AddedTokenSplitter(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  nodes_.emplace_back();
  for (std::size_t t = 0; t < tokens_.size(); ++t) {
    if (tokens_[t].content.empty()) continue;
    int node = 0;
    for (unsigned char b : tokens_[t].content) {
      int next = child(node, b);
      if (next < 0) {
        next = static_cast<int>(nodes_.size());
        nodes_.emplace_back();
        auto& ch = nodes_[node].children;
        ch.insert(std::upper_bound(ch.begin(), ch.end(), std::make_pair(b, -1),
                                   [](const auto& a, const auto& c) { return a.first < c.first; }),
                  {b, next});
      }
      node = next;
    }
    nodes_[node].token = static_cast<int>(t);
  }
}

int AddedTokenSplitter::child(int node, unsigned char b) const {
  const auto& ch = nodes_[node].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), b, [](const auto& a, unsigned char v) { return a.first < v; });
  return (it != ch.end() && it->first == b) ? it->second : -1;
}

int AddedTokenSplitter::longest_at(std::string_view text, std::size_t i, bool allow_special,
                                   std::size_t* len) const {
  int best = -1;
  int node = 0;
  for (std::size_t k = i; k < text.size(); ++k) {
    node = child(node, static_cast<unsigned char>(text[k]));
    if (node < 0) break;
    const int t = nodes_[node].token;
    if (t >= 0 && (allow_special || !tokens_[t].special)) {
      best = t;
      *len = k + 1 - i;
    }
  }
  return best;
}

std::vector<TextSegment> AddedTokenSplitter::split(std::string_view text, bool allow_special) const {
  std::vector<TextSegment> out;
  if (tokens_.empty()) {
    if (!text.empty()) out.push_back({text, -1});
    return out;
  }
  std::size_t plain_start = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t len = 0;
    const int t = longest_at(text, i, allow_special, &len);
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[t];
    std::size_t begin = i, end = i + len;
    if (tok.single_word) {
      std::size_t cl = 0;
      const bool word_before = begin > 0 && [&] {
        std::size_t s = begin - 1;
        while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        return is_word_char(utf8::decode(text, s, &cl));
      }();
      const bool word_after = end < text.size() && is_word_char(utf8::decode(text, end, &cl));
      if (word_before || word_after) {
        ++i;
        continue;
      }
    }
    if (tok.lstrip) {
      while (begin > plain_start) {
        std::size_t s = begin - 1, cl = 0;
        while (s > plain_start && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        if (!is_unicode_white_space(utf8::decode(text, s, &cl))) break;
        begin = s;
      }
    }
    if (tok.rstrip) {
      while (end < text.size()) {
        std::size_t cl = 0;
        if (!is_unicode_white_space(utf8::decode(text, end, &cl))) break;
        end += cl;
      }
    }
    if (begin > plain_start) out.push_back({text.substr(plain_start, begin - plain_start), -1});
    out.push_back({{}, tok.id});
    plain_start = i = end;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
  return out;
}

}  // namespace k2
