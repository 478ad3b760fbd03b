// A parsed Jinja template and its renderer (the interpreter over jinja_ast), with jinja2's scoping:
// for-loops and macros open scopes, if-blocks do not, namespaces are shared by reference.
#pragma once

#include <string>
#include <string_view>

#include "text/jinja_ast.h"
#include "text/jinja_lexer.h"

namespace k2::jinja {

class Template {
 public:
  // Parses source; throws TemplateError for syntax errors or unsupported constructs.
  explicit Template(std::string_view source, const LexOptions& options = {});

  // Renders with `variables` on top of the default globals (range, namespace, ...).
  // Throws TemplateError where jinja2 would raise.
  std::string render(const Dict& variables) const;

 private:
  Body body_;
};

}  // namespace k2::jinja
