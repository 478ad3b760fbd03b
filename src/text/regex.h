// A compiled PCRE2 pattern (UTF + UCP, JIT when available) with findall-style splitting, used by the
// pre-tokenizers. Patterns written for Rust's regex / Oniguruma go through translate_regex() first.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace k2 {

struct Span {
  std::size_t begin = 0;
  std::size_t end = 0;
};

class Regex {
 public:
  // Compiles a PCRE2 pattern; throws k2::InputError naming the pattern and offset on failure.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All successive non-overlapping matches in text (valid UTF-8), leftmost-first like Python's
  // re.finditer; an empty match advances by one code point.
  std::vector<Span> find_all(std::string_view text) const;

  // The first match at or after byte offset start, or {npos, npos} if none.
  Span find(std::string_view text, std::size_t start) const;

  // True when the whole of text matches.
  bool full_match(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

// Rewrites a pattern in Rust-regex / Oniguruma syntax (what tiktoken and HF tokenizers compile) into
// an equivalent PCRE2 pattern:
//  - class intersections `[A&&[^B]]` (Rust only) become `(?:(?=[^B])[A])`;
//  - `\p{Script}` becomes `\p{sc:Script}` (PCRE2 >= 10.40 reads a bare script name as
//    Script_Extensions, Rust and Oniguruma as Script);
//  - `\s` / `\S` gain U+0085, which Unicode White_Space (Rust, Oniguruma) has and PCRE2's \s lacks.
// Throws k2::InputError for constructs it cannot translate faithfully.
std::string translate_regex(std::string_view pattern);

}  // namespace k2
