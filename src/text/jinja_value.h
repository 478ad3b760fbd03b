// Values of the Jinja subset k2mlx interprets for chat templates, with Python semantics for truth,
// equality, str() and repr() (what jinja2 running in CPython produces). No parsing or evaluation here.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace k2::jinja {

// A template could not be rendered (jinja2 would raise TemplateError / UndefinedError / TypeError).
class TemplateError : public InputError {
 public:
  using InputError::InputError;
};

struct Value;
using List = std::vector<Value>;

// Insertion-ordered string-keyed mapping (Python dict with str keys).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
  const Value* keyword(const std::string& name) const;
};

using Function = std::function<Value(CallArgs&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function };
  Kind kind = Kind::Undefined;
  bool b = false;
  std::int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<List> list;        // List
  std::shared_ptr<Dict> dict;        // Dict, and the mutable attributes of a Namespace
  std::shared_ptr<Function> fn;      // Function
  bool is_tuple = false;             // a List that Python would print as a tuple

  static Value undefined() { return Value{}; }
  static Value none();
  static Value boolean(bool v);
  static Value integer(std::int64_t v);
  static Value number(double v);
  static Value string(std::string v);
  static Value make_list(List v);
  static Value make_dict(Dict v);
  static Value make_namespace(Dict v);
  static Value function(Function fn);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_list() const { return kind == Kind::List; }
  bool is_dict() const { return kind == Kind::Dict; }
};

// Python bool(v).
bool truthy(const Value& v);
// Python str(v) (jinja prints Undefined as "").
std::string to_str(const Value& v);
// Python repr(v).
std::string repr(const Value& v);
// Python float.__repr__.
std::string float_repr(double d);
// Python ==.
bool equals(const Value& a, const Value& b);
// Python type name, for error messages.
std::string type_name(const Value& v);

// Arrays and objects nested deeper than this are refused (TemplateError) by from_json: the conversion,
// and rendering after it, recurse once per level, and a request body 100,000 levels deep would otherwise
// overflow the stack. Real chat messages and tool schemas stay far below it.
constexpr int kMaxJsonNesting = 256;

Value from_json(const nlohmann::ordered_json& j);

}  // namespace k2::jinja
