// Python's json.dumps for Jinja values, byte for byte: what transformers' `tojson` filter emits
// (ensure_ascii=False, ", " / ": " separators, insertion order unless sort_keys).
#pragma once

#include <optional>
#include <string>

#include "text/jinja_value.h"

namespace k2::jinja {

struct JsonDumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // None: single line; else the per-level indent string
  std::string item_separator = ", ";  // json.dumps default is ", " (or "," when indent is set)
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// Throws TemplateError for values JSON cannot hold (Undefined, functions, namespaces).
std::string python_json_dumps(const Value& v, const JsonDumpOptions& options);

}  // namespace k2::jinja
