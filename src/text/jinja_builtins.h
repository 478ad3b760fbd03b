// Jinja built-ins for chat templates: filters, tests, str/dict methods and global functions, each
// with the Python / jinja2 behaviour. Unknown names raise TemplateError instead of guessing.
#pragma once

#include <string>

#include "text/jinja_value.h"

namespace k2::jinja {

// Applies filter `name` to v.
Value apply_filter(const std::string& name, const Value& v, CallArgs& args);
// Evaluates test `name` on v (the "is" operator, before negation).
bool apply_test(const std::string& name, const Value& v, CallArgs& args);
// obj.name: a bound method for str/dict methods, else the item (jinja2's getattr order).
Value get_attr(const Value& obj, const std::string& name);
// obj[key]: the item, falling back to an attribute (jinja2's getitem order).
Value get_item(const Value& obj, const Value& key);
// Python slicing obj[start:stop:step] for lists and strings.
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// `a in b`.
bool contains(const Value& container, const Value& item);
// Globals transformers provides: range, namespace, dict, raise_exception, strftime_now.
Dict default_globals();
// Iterates a value as a for loop does (list items, dict keys, string characters; Undefined: none).
List iterate(const Value& v);

}  // namespace k2::jinja
