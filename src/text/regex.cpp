// PCRE2 wrapper and the Rust-regex -> PCRE2 pattern translation (see regex.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/regex.h"

#include <pcre2.h>

#include <array>
#include <mutex>

#include "core/error.h"
#include "text/utf8.h"

namespace k2 {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

namespace {

// RAII for per-call match data; a JIT stack big enough for long whitespace / letter runs
// (the JIT otherwise fails with PCRE2_ERROR_JIT_STACKLIMIT on megabyte-long pieces).
struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* ctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  explicit MatchState(const pcre2_code* code) {
    data = pcre2_match_data_create_from_pattern(code, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    if (ctx && stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~MatchState() {
    if (stack) pcre2_jit_stack_free(stack);
    if (ctx) pcre2_match_context_free(ctx);
    if (data) pcre2_match_data_free(data);
  }
};

std::string pcre2_message(int code) {
  std::array<PCRE2_UCHAR, 256> buf{};
  pcre2_get_error_message(code, buf.data(), buf.size());
  return std::string(reinterpret_cast<const char*>(buf.data()));
}

// Runs one match from start; returns false when there is none.
bool match_once(const pcre2_code* code, MatchState& st, std::string_view text, std::size_t start,
                uint32_t options, Span* out) {
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start,
                             options | PCRE2_NO_UTF_CHECK, st.data, st.ctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    throw Error("regex match failed (" + pcre2_message(rc) + ") at byte " + std::to_string(start) +
                " of a " + std::to_string(text.size()) + "-byte text");
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
  out->begin = ov[0];
  out->end = ov[1];
  return true;
}

}  // namespace

Regex::Regex(const std::string& pattern) : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!impl_->code) {
    throw InputError("cannot compile regex /" + pattern + "/ at offset " + std::to_string(offset) +
                     ": " + pcre2_message(err));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

std::vector<Span> Regex::find_all(std::string_view text) const {
  std::vector<Span> spans;
  MatchState st(impl_->code);
  std::size_t pos = 0;
  Span m;
  while (pos <= text.size() && match_once(impl_->code, st, text, pos, 0, &m)) {
    if (m.end == m.begin) {
      // Empty match: skip one code point, as Python's finditer does.
      if (m.begin >= text.size()) break;
      std::size_t len = 1;
      utf8::decode(text, m.begin, &len);
      pos = m.begin + len;
      continue;
    }
    spans.push_back(m);
    pos = m.end;
  }
  return spans;
}

Span Regex::find(std::string_view text, std::size_t start) const {
  MatchState st(impl_->code);
  Span m;
  if (start > text.size() || !match_once(impl_->code, st, text, start, 0, &m)) return {npos, npos};
  return m;
}

bool Regex::full_match(std::string_view text) const {
  MatchState st(impl_->code);
  Span m;
  return match_once(impl_->code, st, text, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, &m);
}

// ---------------------------------------------------------------------------------------------
// Translation from Rust-regex syntax.

namespace {

bool is_general_category(std::string_view name) {
  static const char* const kNames[] = {
      "L",  "Lu", "Ll", "Lt", "Lm", "Lo", "L&", "LC", "M",  "Mn", "Mc", "Me", "N",  "Nd", "Nl", "No",
      "P",  "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S",  "Sm", "Sc", "Sk", "So", "Z",  "Zs", "Zl",
      "Zp", "C",  "Cc", "Cf", "Cs", "Co", "Cn", "Any"};
  for (const char* n : kNames)
    if (name == n) return true;
  return false;
}

class Translator {
 public:
  explicit Translator(std::string_view p) : p_(p) {}

  std::string run() {
    std::string out;
    while (i_ < p_.size()) {
      const char c = p_[i_];
      if (c == '\\') {
        out += escape(/*in_class=*/false);
      } else if (c == '[') {
        out += char_class();
      } else {
        out.push_back(c);
        ++i_;
      }
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError("cannot translate regex /" + std::string(p_) + "/ to PCRE2 at offset " +
                     std::to_string(i_) + ": " + what);
  }

  // Translates the escape at i_ (p_[i_] == '\\') and advances past it.
  std::string escape(bool in_class) {
    if (i_ + 1 >= p_.size()) fail("dangling backslash");
    const char e = p_[i_ + 1];
    if (e == 'p' || e == 'P') {
      if (i_ + 2 < p_.size() && p_[i_ + 2] == '{') {
        const std::size_t close = p_.find('}', i_ + 3);
        if (close == std::string_view::npos) fail("unterminated \\p{");
        std::string name(p_.substr(i_ + 3, close - i_ - 3));
        i_ = close + 1;
        const bool qualified = name.find_first_of("=:") != std::string::npos;
        if (!qualified && !is_general_category(name)) name = "sc:" + name;
        return std::string("\\") + e + "{" + name + "}";
      }
      std::string out(p_.substr(i_, 3));  // one-letter form, e.g. \pL
      i_ += 3;
      return out;
    }
    if (e == 's') {
      i_ += 2;
      return in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
    }
    if (e == 'S') {
      if (in_class) fail("\\S inside a character class");
      i_ += 2;
      return "[^\\s\\x{85}]";
    }
    if (e == 'u' && i_ + 6 <= p_.size()) {
      // Oniguruma's \uHHHH; PCRE2 spells it \x{HHHH}.
      const std::string hex(p_.substr(i_ + 2, 4));
      if (hex.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
        i_ += 6;
        return "\\x{" + hex + "}";
      }
    }
    std::string out(p_.substr(i_, 2));
    i_ += 2;
    return out;
  }

  // Parses the class starting at p_[i_] == '[' and returns its PCRE2 form.
  std::string char_class() {
    ++i_;
    bool negated = false;
    if (i_ < p_.size() && p_[i_] == '^') {
      negated = true;
      ++i_;
    }
    // Operands separated by top-level "&&"; each is a PCRE2 class (or a group) text.
    std::vector<std::string> operands;
    std::string items;        // plain items of the current operand
    std::vector<std::string> nested;  // nested classes of the current operand
    bool first = true;
    auto close_operand = [&]() {
      if (!items.empty() && !nested.empty()) fail("a class mixing items and nested classes (union)");
      if (nested.size() > 1) fail("a union of nested classes");
      if (!nested.empty()) {
        operands.push_back(nested.front());
      } else if (!items.empty()) {
        operands.push_back("[" + items + "]");
      } else {
        fail("an empty class operand");
      }
      items.clear();
      nested.clear();
    };
    while (true) {
      if (i_ >= p_.size()) fail("unterminated character class");
      const char c = p_[i_];
      if (c == ']' && !first) {
        ++i_;
        break;
      }
      if (c == ']' && first) {
        items += "\\]";
        ++i_;
      } else if (c == '\\') {
        items += escape(/*in_class=*/true);
      } else if (c == '&' && i_ + 1 < p_.size() && p_[i_ + 1] == '&') {
        i_ += 2;
        close_operand();
      } else if (c == '[' && i_ + 1 < p_.size() && p_[i_ + 1] == ':') {
        const std::size_t close = p_.find(":]", i_ + 2);
        if (close == std::string_view::npos) fail("unterminated POSIX class");
        items += std::string(p_.substr(i_, close + 2 - i_));
        i_ = close + 2;
      } else if (c == '[') {
        nested.push_back(char_class());
      } else {
        items.push_back(c);
        ++i_;
      }
      first = false;
    }
    close_operand();
    if (operands.size() == 1) {
      const std::string& op = operands.front();
      if (!negated) return op;
      if (op.size() >= 2 && op[0] == '[' && op[1] != '^') return "[^" + op.substr(1);
      return "(?:(?!" + op + ")(?s:.))";
    }
    // X && Y && Z: one character that is in every operand; lookaheads test all but the first.
    std::string inner = "(?:";
    for (std::size_t k = 1; k < operands.size(); ++k) inner += "(?=" + operands[k] + ")";
    inner += operands.front() + ")";
    if (!negated) return inner;
    return "(?:(?!" + inner + ")(?s:.))";
  }

  std::string_view p_;
  std::size_t i_ = 0;
};

}  // namespace

std::string translate_regex(std::string_view pattern) { return Translator(pattern).run(); }

}  // namespace k2
