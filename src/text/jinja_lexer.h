// Jinja lexer: template source -> a flat token stream (text, {{ }}, {% %} and expression tokens),
// applying jinja2's whitespace control exactly as transformers configures it (trim_blocks,
// lstrip_blocks, "-" / "+" modifiers, newline normalization, trailing newline dropped).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace k2::jinja {

struct Token {
  enum class Type { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };
  Type type;
  std::string value;  // text, name, decoded string literal, number text, or operator
  int line = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Throws TemplateError with the line number for unterminated tags or strings.
std::vector<Token> lex(std::string_view source, const LexOptions& options = {});

}  // namespace k2::jinja
