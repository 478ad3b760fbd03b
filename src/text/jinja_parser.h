// Jinja parser: token stream -> statement tree. Knows the tags chat templates use (if/elif/else,
// for/else with loop controls, set / set-block, macro, generation) and refuses others by name.
#pragma once

#include <string_view>

#include "text/jinja_ast.h"
#include "text/jinja_lexer.h"

namespace k2::jinja {

// Throws TemplateError naming the line for syntax errors and unsupported tags.
Body parse(const std::vector<Token>& tokens);

}  // namespace k2::jinja
