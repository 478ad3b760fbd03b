// Jinja tokenizer with jinja2's whitespace rules (see jinja_lexer.h).
#include "text/jinja_lexer.h"

#include <algorithm>
#include <cctype>

#include "text/jinja_value.h"
#include "text/utf8.h"

namespace k2::jinja {
namespace {

bool is_py_space_at(std::string_view s, std::size_t i, std::size_t* len) {
  const char32_t c = utf8::decode(s, i, len);
  return utf8::python_isspace(c);
}

// Python str.rstrip() / lstrip() over Unicode whitespace.
std::string_view rstrip(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    std::size_t len = 0;
    if (!is_py_space_at(s, start, &len)) break;
    end = start;
  }
  return s.substr(0, end);
}

std::size_t skip_space(std::string_view s, std::size_t i) {
  while (i < s.size()) {
    std::size_t len = 1;
    if (!is_py_space_at(s, i, &len)) break;
    i += len;
  }
  return i;
}

// Decodes a Python string literal body (jinja2 applies "unicode-escape").
std::string unescape(std::string_view body, int line) {
  std::string out;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    const char e = body[++i];
    auto hex = [&](std::size_t n) {
      if (i + 1 + n > body.size()) throw TemplateError("truncated escape in string literal at line " + std::to_string(line));
      const std::string h(body.substr(i + 1, n));
      if (h.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        throw TemplateError("bad \\x/\\u escape in string literal at line " + std::to_string(line));
      i += n;
      utf8::append(out, static_cast<char32_t>(std::stoul(h, nullptr, 16)));
    };
    switch (e) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'v': out.push_back('\v'); break;
      case '\n': break;
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      default:
        if (e >= '0' && e <= '7') {
          unsigned v = static_cast<unsigned>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
            v = v * 8 + static_cast<unsigned>(body[++i] - '0');
          utf8::append(out, v);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const LexOptions& o) : src_(std::move(source)), opt_(o) {}

  std::vector<Token> run() {
    std::size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const std::size_t tag = find_tag(pos);
      std::string_view text(src_.data() + pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      if (tag == std::string::npos) {
        emit_text(text);
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (sign == '-') {
        text = rstrip(text);
      } else if (kind != '{' && sign != '+' && opt_.lstrip_blocks) {
        const std::size_t nl = text.rfind('\n');
        const std::size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && text.substr(l_pos).find_first_not_of(" \t") == std::string_view::npos)
          text = text.substr(0, l_pos);
      }
      emit_text(text);
      line_ += count_lines(std::string_view(src_).substr(pos, tag - pos));
      std::size_t p = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      std::size_t after;
      if (kind == '#') {
        const std::size_t close = src_.find("#}", p);
        if (close == std::string::npos) throw TemplateError("unterminated comment at line " + std::to_string(line_));
        after = finish_tag(close, close > p && src_[close - 1] == '-', true);
        line_ += count_lines(std::string_view(src_).substr(tag, after - tag));
      } else {
        tokens_.push_back({kind == '{' ? Token::Type::VarBegin : Token::Type::BlockBegin, "", line_});
        const std::string close_str = kind == '{' ? "}}" : "%}";
        const std::size_t end = lex_expression(p, close_str);
        const bool minus = src_[end] == '-';
        tokens_.push_back({kind == '{' ? Token::Type::VarEnd : Token::Type::BlockEnd, "", line_});
        after = finish_tag(minus ? end + 1 : end, minus, kind == '%');
        line_ += count_lines(std::string_view(src_).substr(tag, after - tag));
      }
      line_starting = after > 0 && src_[after - 1] == '\n' && after > tag;
      pos = after;
    }
    tokens_.push_back({Token::Type::End, "", line_});
    return std::move(tokens_);
  }

 private:
  static int count_lines(std::string_view s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
  }

  std::size_t find_tag(std::size_t pos) const {
    for (std::size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void emit_text(std::string_view text) {
    if (!text.empty()) tokens_.push_back({Token::Type::Text, std::string(text), line_});
  }

  // Position after the closing delimiter at `close` plus what whitespace control removes.
  std::size_t finish_tag(std::size_t close, bool minus, bool block) {
    std::size_t after = close + 2;
    if (minus) return skip_space(src_, after);
    if (block && opt_.trim_blocks && after < src_.size() && src_[after] == '\n') ++after;
    return after;
  }

  // Lexes expression tokens from p until close_str (optionally preceded by '-'); returns the
  // position of the '-' or of close_str.
  std::size_t lex_expression(std::size_t p, const std::string& close_str) {
    while (true) {
      while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\r')) {
        if (src_[p] == '\n') ++line_;
        ++p;
      }
      if (p >= src_.size()) throw TemplateError("unterminated tag at line " + std::to_string(line_));
      if (src_.compare(p, close_str.size(), close_str) == 0) return p;
      if (src_[p] == '-' && src_.compare(p + 1, close_str.size(), close_str) == 0) return p;
      const char c = src_[p];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t e = p;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        tokens_.push_back({Token::Type::Name, src_.substr(p, e - p), line_});
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        std::size_t e = p;
        bool is_float = false;
        while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        }
        if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
          std::size_t k = e + 1;
          if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
          if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
            is_float = true;
            e = k;
            while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
          }
        }
        std::string num = src_.substr(p, e - p);
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        tokens_.push_back({is_float ? Token::Type::Float : Token::Type::Int, num, line_});
        p = e;
      } else if (c == '\'' || c == '"') {
        std::size_t e = p + 1;
        while (e < src_.size() && src_[e] != c) e += src_[e] == '\\' ? 2 : 1;
        if (e >= src_.size()) throw TemplateError("unterminated string literal at line " + std::to_string(line_));
        tokens_.push_back({Token::Type::String, unescape(std::string_view(src_).substr(p + 1, e - p - 1), line_), line_});
        line_ += count_lines(std::string_view(src_).substr(p, e - p));
        p = e + 1;
      } else {
        static const char* const kOps[] = {"==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<",
                                           ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ".", ",", ":", "|"};
        bool found = false;
        for (const char* op : kOps) {
          const std::size_t n = std::char_traits<char>::length(op);
          if (src_.compare(p, n, op) == 0) {
            tokens_.push_back({Token::Type::Op, op, line_});
            p += n;
            found = true;
            break;
          }
        }
        if (!found) throw TemplateError("unexpected character '" + std::string(1, c) + "' at line " + std::to_string(line_));
      }
    }
  }

  std::string src_;
  LexOptions opt_;
  std::vector<Token> tokens_;
  int line_ = 1;
};

// jinja2 normalizes \r\n and \r to \n and drops one trailing newline.
std::string normalize_newlines(std::string_view source, bool keep_trailing_newline) {
  std::string out;
  out.reserve(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

std::vector<Token> lex(std::string_view source, const LexOptions& options) {
  return Lexer(normalize_newlines(source, options.keep_trailing_newline), options).run();
}

}  // namespace k2::jinja
