// Special / added tokens: their table and the splitting of text at their literal occurrences
// (leftmost, longest at a position), done before any regex or BPE step. No vocabulary logic here.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace k2 {

struct AddedToken {
  std::string content;
  int id = -1;
  bool special = true;       // control token (Kimi: every reserved id; HF: "special": true)
  bool lstrip = false;       // HF: absorb whitespace on the left into the match
  bool rstrip = false;       // HF: absorb whitespace on the right into the match
  bool single_word = false;  // HF: only match when not inside a word
};

// One piece of text after splitting: either ordinary text or one added token.
struct TextSegment {
  std::string_view text;  // ordinary text (empty when token >= 0)
  int token = -1;         // id of the matched added token, or -1
};

class AddedTokenSplitter {
 public:
  AddedTokenSplitter() = default;
  explicit AddedTokenSplitter(const std::vector<AddedToken>& tokens);

  // Splits text at occurrences of enabled tokens: special ones only when allow_special, non-special
  // ones always (as Hugging Face does). Empty ordinary segments are omitted.
  std::vector<TextSegment> split(std::string_view text, bool allow_special) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int>> children;  // sorted by byte
    int token = -1;                                       // index into tokens_
  };
  int child(int node, unsigned char b) const;
  // Longest enabled token starting at text[i]; returns its index or -1 and its length in *len.
  int longest_at(std::string_view text, std::size_t i, bool allow_special, std::size_t* len) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;
};

}  // namespace k2
