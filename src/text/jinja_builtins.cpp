// Filters, tests, methods and globals of the Jinja subset (see jinja_builtins.h). Each follows the
// jinja2 3.1 / CPython behaviour; transformers replaces `tojson` with plain json.dumps.
#include "text/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "text/py_json.h"
#include "text/utf8.h"

namespace k2::jinja {
namespace {

[[noreturn]] void type_error(const std::string& what) { throw TemplateError(what); }

const Value& arg(CallArgs& a, std::size_t pos, const char* name, const Value& fallback) {
  if (pos < a.positional.size()) return a.positional[pos];
  if (const Value* v = a.keyword(name)) return *v;
  return fallback;
}

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 1;
    utf8::decode(s, i, &len);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

bool is_space_cp(const std::string& cp) {
  std::size_t len = 0;
  return utf8::python_isspace(utf8::decode(cp, 0, &len));
}

std::string strip_chars(const std::string& s, const Value& chars, bool left, bool right) {
  std::vector<std::string> cps = code_points(s);
  std::vector<std::string> set;
  if (chars.is_string()) set = code_points(chars.s);
  auto strip_it = [&](const std::string& cp) {
    if (chars.is_none() || chars.is_undefined()) return is_space_cp(cp);
    return std::find(set.begin(), set.end(), cp) != set.end();
  };
  std::size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  std::string out;
  for (std::size_t k = b; k < e; ++k) out += cps[k];
  return out;
}

std::string ascii_case(std::string s, bool upper) {
  for (char& c : s) {
    if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return s;
}

void require_ascii_for_case(const std::string& s, const char* what) {
  for (unsigned char c : s)
    if (c >= 0x80) type_error(std::string(what) + " of non-ASCII text is not supported by k2mlx's template engine");
}

List split(const std::string& s, const Value& sep, std::int64_t maxsplit) {
  List out;
  if (sep.is_none() || sep.is_undefined()) {
    std::vector<std::string> cps = code_points(s);
    std::size_t k = 0;
    std::int64_t splits = 0;
    while (k < cps.size()) {
      while (k < cps.size() && is_space_cp(cps[k])) ++k;
      if (k == cps.size()) break;
      if (maxsplit >= 0 && splits == maxsplit) {
        std::string rest;
        for (std::size_t m = k; m < cps.size(); ++m) rest += cps[m];
        // Python strips trailing whitespace of the remainder only when splitting fully; keep as is.
        out.push_back(Value::string(rest));
        return out;
      }
      std::string word;
      while (k < cps.size() && !is_space_cp(cps[k])) word += cps[k++];
      out.push_back(Value::string(word));
      ++splits;
    }
    return out;
  }
  if (!sep.is_string()) type_error("split() separator must be a string");
  if (sep.s.empty()) type_error("empty separator");
  std::size_t pos = 0;
  std::int64_t splits = 0;
  while (maxsplit < 0 || splits < maxsplit) {
    const std::size_t f = s.find(sep.s, pos);
    if (f == std::string::npos) break;
    out.push_back(Value::string(s.substr(pos, f - pos)));
    pos = f + sep.s.size();
    ++splits;
  }
  out.push_back(Value::string(s.substr(pos)));
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, std::int64_t count) {
  if (from.empty()) {
    std::string out;
    std::int64_t n = 0;
    for (const std::string& cp : code_points(s)) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      out += cp;
    }
    if (count < 0 || n < count) out += to;
    return out;
  }
  std::string out;
  std::size_t pos = 0;
  std::int64_t n = 0;
  while (count < 0 || n < count) {
    const std::size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
    ++n;
  }
  out.append(s, pos);
  return out;
}

std::int64_t as_int(const Value& v, const char* what) {
  if (v.kind == Value::Kind::Int) return v.i;
  if (v.kind == Value::Kind::Bool) return v.b;
  type_error(std::string(what) + " must be an integer, got " + type_name(v));
}

Value bound(Value self, std::string name);

Value call_method(const Value& self, const std::string& name, CallArgs& a) {
  const Value none = Value::none();
  if (self.is_string()) {
    const std::string& s = self.s;
    if (name == "split") return Value::make_list(split(s, arg(a, 0, "sep", none), as_int(arg(a, 1, "maxsplit", Value::integer(-1)), "maxsplit")));
    if (name == "strip") return Value::string(strip_chars(s, arg(a, 0, "chars", none), true, true));
    if (name == "lstrip") return Value::string(strip_chars(s, arg(a, 0, "chars", none), true, false));
    if (name == "rstrip") return Value::string(strip_chars(s, arg(a, 0, "chars", none), false, true));
    if (name == "startswith" || name == "endswith") {
      const Value& p = arg(a, 0, "prefix", none);
      List options = p.is_list() ? *p.list : List{p};
      for (const Value& o : options) {
        if (!o.is_string()) type_error(name + " argument must be str or a tuple of str");
        if (name == "startswith" ? s.compare(0, o.s.size(), o.s) == 0 && s.size() >= o.s.size()
                                 : s.size() >= o.s.size() && s.compare(s.size() - o.s.size(), o.s.size(), o.s) == 0)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (name == "replace") {
      const Value& from = arg(a, 0, "old", none);
      const Value& to = arg(a, 1, "new", none);
      if (!from.is_string() || !to.is_string()) type_error("replace() arguments must be str");
      return Value::string(replace_all(s, from.s, to.s, as_int(arg(a, 2, "count", Value::integer(-1)), "count")));
    }
    if (name == "upper" || name == "lower") {
      require_ascii_for_case(s, name.c_str());
      return Value::string(ascii_case(s, name == "upper"));
    }
    if (name == "find") {
      const Value& sub = arg(a, 0, "sub", none);
      if (!sub.is_string()) type_error("find() argument must be str");
      const std::size_t f = s.find(sub.s);
      return Value::integer(f == std::string::npos ? -1 : static_cast<std::int64_t>(utf8::count_code_points(s.substr(0, f))));
    }
  } else if (self.is_dict()) {
    if (name == "get") {
      const Value& k = arg(a, 0, "key", none);
      const Value* v = k.is_string() ? self.dict->find(k.s) : nullptr;
      return v ? *v : arg(a, 1, "default", none);
    }
    if (name == "items" || name == "keys" || name == "values") {
      List out;
      for (const auto& [k, v] : self.dict->items) {
        if (name == "items") {
          Value pair = Value::make_list({Value::string(k), v});
          pair.is_tuple = true;
          out.push_back(pair);
        } else {
          out.push_back(name == "keys" ? Value::string(k) : v);
        }
      }
      return Value::make_list(std::move(out));
    }
  }
  type_error("'" + type_name(self) + "' object has no supported method '" + name + "'");
}

bool has_method(const Value& self, const std::string& name) {
  static const char* const kStr[] = {"split", "strip", "lstrip", "rstrip", "startswith", "endswith",
                                     "replace", "upper", "lower", "find"};
  static const char* const kDict[] = {"get", "items", "keys", "values"};
  if (self.is_string()) return std::find(std::begin(kStr), std::end(kStr), name) != std::end(kStr);
  if (self.is_dict()) return std::find(std::begin(kDict), std::end(kDict), name) != std::end(kDict);
  return false;
}

Value bound(Value self, std::string name) {
  return Value::function([self = std::move(self), name = std::move(name)](CallArgs& a) { return call_method(self, name, a); });
}

std::size_t length_of(const Value& v) {
  switch (v.kind) {
    case Value::Kind::String: return utf8::count_code_points(v.s);
    case Value::Kind::List: return v.list->size();
    case Value::Kind::Dict: return v.dict->items.size();
    case Value::Kind::Undefined: return 0;
    default: type_error("object of type '" + type_name(v) + "' has no len()");
  }
}

JsonDumpOptions json_options(CallArgs& a) {
  JsonDumpOptions o;
  const Value none = Value::none();
  const Value& indent = arg(a, 0, "indent", none);
  if (indent.kind == Value::Kind::Int) o.indent = std::string(static_cast<std::size_t>(std::max<std::int64_t>(indent.i, 0)), ' ');
  else if (indent.is_string()) o.indent = indent.s;
  if (o.indent) o.item_separator = ",";
  if (const Value* v = a.keyword("ensure_ascii")) o.ensure_ascii = truthy(*v);
  if (const Value* v = a.keyword("sort_keys")) o.sort_keys = truthy(*v);
  if (const Value* v = a.keyword("separators"); v && v->is_list() && v->list->size() == 2) {
    o.item_separator = to_str((*v->list)[0]);
    o.key_separator = to_str((*v->list)[1]);
  }
  return o;
}

Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  std::size_t pos = 0;
  while (true) {
    const std::size_t dot = path.find('.', pos);
    cur = get_item(cur, Value::string(path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos)));
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

}  // namespace

List iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return *v.list;
    case Value::Kind::Dict: {
      List keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Value::Kind::String: {
      List out;
      for (std::string& cp : code_points(v.s)) out.push_back(Value::string(std::move(cp)));
      return out;
    }
    default: type_error("'" + type_name(v) + "' object is not iterable");
  }
}

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) type_error("'" + name + "' is undefined: attribute of an undefined value");
  if (obj.kind == Value::Kind::Namespace) {
    const Value* v = obj.dict->find(name);
    return v ? *v : Value::undefined();
  }
  if (has_method(obj, name)) return bound(obj, name);
  if (obj.is_dict()) {
    const Value* v = obj.dict->find(name);
    return v ? *v : Value::undefined();
  }
  return Value::undefined();
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) type_error("cannot index an undefined value");
  if (obj.is_dict() || obj.kind == Value::Kind::Namespace) {
    if (key.is_string()) {
      if (const Value* v = obj.dict->find(key.s)) return *v;
      if (obj.is_dict() && has_method(obj, key.s)) return bound(obj, key.s);
    }
    return Value::undefined();
  }
  if (obj.is_list() || obj.is_string()) {
    if (key.kind != Value::Kind::Int && key.kind != Value::Kind::Bool) {
      if (key.is_string() && has_method(obj, key.s)) return bound(obj, key.s);
      return Value::undefined();
    }
    const std::int64_t n = static_cast<std::int64_t>(obj.is_list() ? obj.list->size() : utf8::count_code_points(obj.s));
    std::int64_t i = as_int(key, "index");
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined();
    if (obj.is_list()) return (*obj.list)[static_cast<std::size_t>(i)];
    return Value::string(code_points(obj.s)[static_cast<std::size_t>(i)]);
  }
  return Value::undefined();
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (!obj.is_list() && !obj.is_string()) type_error("'" + type_name(obj) + "' object is not subscriptable");
  List items = obj.is_list() ? *obj.list : iterate(obj);
  const std::int64_t n = static_cast<std::int64_t>(items.size());
  const auto given = [](const Value& v) { return !(v.is_none() || v.is_undefined()); };
  const std::int64_t st = given(step) ? as_int(step, "slice step") : 1;
  if (st == 0) type_error("slice step cannot be zero");
  auto clamp = [&](const Value& v, std::int64_t def, bool is_start) {
    if (!given(v)) return def;
    std::int64_t x = as_int(v, "slice index");
    if (x < 0) x += n;
    if (st > 0) return std::clamp<std::int64_t>(x, 0, n);
    (void)is_start;
    return std::clamp<std::int64_t>(x, -1, n - 1);
  };
  const std::int64_t b = clamp(start, st > 0 ? 0 : n - 1, true);
  const std::int64_t e = clamp(stop, st > 0 ? n : -1, false);
  List out;
  for (std::int64_t k = b; st > 0 ? k < e : k > e; k += st) out.push_back(items[static_cast<std::size_t>(k)]);
  if (obj.is_list()) return Value::make_list(std::move(out));
  std::string s;
  for (const Value& v : out) s += v.s;
  return Value::string(s);
}

bool contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) type_error("'in <string>' requires string as left operand, not " + type_name(item));
    return container.s.find(item.s) != std::string::npos;
  }
  if (container.is_dict() || container.kind == Value::Kind::Namespace)
    return item.is_string() && container.dict->find(item.s) != nullptr;
  if (container.is_list()) {
    for (const Value& v : *container.list)
      if (equals(v, item)) return true;
    return false;
  }
  if (container.is_undefined()) return false;
  type_error("argument of type '" + type_name(container) + "' is not iterable");
}

Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
  const Value none = Value::none();
  if (name == "tojson") return Value::string(python_json_dumps(v, json_options(a)));
  if (name == "length" || name == "count") return Value::integer(static_cast<std::int64_t>(length_of(v)));
  if (name == "string") return Value::string(to_str(v));
  if (name == "safe") return v;
  if (name == "trim") return Value::string(strip_chars(to_str(v), arg(a, 0, "chars", none), true, true));
  if (name == "upper" || name == "lower") {
    const std::string s = to_str(v);
    require_ascii_for_case(s, name.c_str());
    return Value::string(ascii_case(s, name == "upper"));
  }
  if (name == "capitalize") {
    std::string s = to_str(v);
    require_ascii_for_case(s, "capitalize");
    s = ascii_case(s, false);
    if (!s.empty()) s[0] = ascii_case(s.substr(0, 1), true)[0];
    return Value::string(s);
  }
  if (name == "default" || name == "d") {
    const Value& def = arg(a, 0, "default_value", Value::string(""));
    const bool boolean = truthy(arg(a, 1, "boolean", Value::boolean(false)));
    if (v.is_undefined() || (boolean && !truthy(v))) return def;
    return v;
  }
  if (name == "join") {
    const Value& sep = arg(a, 0, "d", Value::string(""));
    const Value* attr = a.keyword("attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v)) {
      if (!first) out += to_str(sep);
      first = false;
      out += to_str(attr ? attribute_path(item, to_str(*attr)) : item);
    }
    return Value::string(out);
  }
  if (name == "first" || name == "last") {
    List items = iterate(v);
    if (items.empty()) return Value::undefined();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value::make_list(iterate(v));
  if (name == "reverse") {
    if (v.is_string()) {
      std::vector<std::string> cps = code_points(v.s);
      std::string out;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
      return Value::string(out);
    }
    List items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::make_list(std::move(items));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::make_list({});
    CallArgs none_args;
    return call_method(v, "items", none_args);
  }
  if (name == "replace") {
    const Value& from = arg(a, 0, "old", none);
    const Value& to = arg(a, 1, "new", none);
    return Value::string(replace_all(to_str(v), to_str(from), to_str(to), as_int(arg(a, 2, "count", Value::integer(-1)), "count")));
  }
  if (name == "int") {
    if (v.kind == Value::Kind::Float) return Value::integer(static_cast<std::int64_t>(v.f));
    if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool) return Value::integer(as_int(v, "int"));
    if (v.is_string()) {
      try {
        std::size_t used = 0;
        const std::string t = strip_chars(v.s, none, true, true);
        const long long x = std::stoll(t, &used);
        if (used == t.size()) return Value::integer(x);
      } catch (const std::exception&) {
      }
    }
    return arg(a, 0, "default", Value::integer(0));
  }
  if (name == "float") {
    if (v.kind == Value::Kind::Float) return v;
    if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool) return Value::number(static_cast<double>(as_int(v, "float")));
    return arg(a, 0, "default", Value::number(0.0));
  }
  if (name == "abs") {
    if (v.kind == Value::Kind::Float) return Value::number(std::fabs(v.f));
    return Value::integer(std::llabs(as_int(v, "abs")));
  }
  if (name == "map" || name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    List out;
    for (const Value& item : iterate(v)) {
      if (name == "map") {
        if (const Value* attr = a.keyword("attribute")) {
          Value got = attribute_path(item, to_str(*attr));
          if (got.is_undefined()) {
            if (const Value* def = a.keyword("default")) got = *def;
          }
          out.push_back(got);
        } else {
          if (a.positional.empty()) type_error("map filter needs a filter name or attribute=");
          CallArgs rest;
          rest.positional.assign(a.positional.begin() + 1, a.positional.end());
          out.push_back(apply_filter(to_str(a.positional[0]), item, rest));
        }
        continue;
      }
      const bool by_attr = name == "selectattr" || name == "rejectattr";
      const std::size_t first_arg = by_attr ? 1 : 0;
      const Value subject = by_attr ? attribute_path(item, to_str(arg(a, 0, "attr", none))) : item;
      bool ok;
      if (a.positional.size() > first_arg) {
        CallArgs rest;
        rest.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(first_arg) + 1, a.positional.end());
        ok = apply_test(to_str(a.positional[first_arg]), subject, rest);
      } else {
        ok = truthy(subject);
      }
      if (ok == (name == "select" || name == "selectattr")) out.push_back(item);
    }
    return Value::make_list(std::move(out));
  }
  if (name == "indent") {
    const Value& w = arg(a, 0, "width", Value::integer(4));
    const std::string pad = w.is_string() ? w.s : std::string(static_cast<std::size_t>(as_int(w, "width")), ' ');
    const bool first = truthy(arg(a, 1, "first", Value::boolean(false)));
    const bool blank = truthy(arg(a, 2, "blank", Value::boolean(false)));
    const std::string s = to_str(v);
    std::string out;
    std::size_t pos = 0;
    bool is_first = true;
    while (true) {
      const std::size_t nl = s.find('\n', pos);
      const std::string line = s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      const bool indent_it = is_first ? first : (blank || !line.empty());
      out += (indent_it ? pad : "") + line;
      if (nl == std::string::npos) break;
      out += "\n";
      pos = nl + 1;
      is_first = false;
    }
    return Value::string(out);
  }
  throw TemplateError("unsupported Jinja filter '" + name + "'");
}

bool apply_test(const std::string& name, const Value& v, CallArgs& a) {
  const Value none = Value::none();
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.kind == Value::Kind::Int || v.kind == Value::Kind::Float;
  if (name == "integer") return v.kind == Value::Kind::Int;
  if (name == "float") return v.kind == Value::Kind::Float;
  if (name == "boolean") return v.kind == Value::Kind::Bool;
  if (name == "true") return v.kind == Value::Kind::Bool && v.b;
  if (name == "false") return v.kind == Value::Kind::Bool && !v.b;
  if (name == "mapping") return v.is_dict();
  if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict() || v.is_undefined();
  if (name == "callable") return v.kind == Value::Kind::Function;
  if (name == "odd" || name == "even") return (as_int(v, name.c_str()) % 2 != 0) == (name == "odd");
  if (name == "divisibleby") {
    const std::int64_t d = as_int(arg(a, 0, "num", none), "divisibleby");
    return d != 0 && as_int(v, "divisibleby") % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, arg(a, 0, "other", none));
  if (name == "ne" || name == "!=") return !equals(v, arg(a, 0, "other", none));
  if (name == "in") return contains(arg(a, 0, "seq", none), v);
  if (name == "sameas") {
    const Value& o = arg(a, 0, "other", none);
    if (v.kind != o.kind) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.kind == Value::Kind::Bool) return v.b == o.b;
    return v.list == o.list && v.dict == o.dict && v.fn == o.fn && v.list && v.dict;
  }
  throw TemplateError("unsupported Jinja test '" + name + "'");
}

Dict default_globals() {
  Dict g;
  g.set("range", Value::function([](CallArgs& a) {
          std::int64_t start = 0, stop = 0, step = 1;
          if (a.positional.size() == 1) {
            stop = as_int(a.positional[0], "range()");
          } else if (a.positional.size() >= 2) {
            start = as_int(a.positional[0], "range()");
            stop = as_int(a.positional[1], "range()");
            if (a.positional.size() >= 3) step = as_int(a.positional[2], "range()");
          } else {
            type_error("range expected at least 1 argument");
          }
          if (step == 0) type_error("range() arg 3 must not be zero");
          List out;
          for (std::int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
            out.push_back(Value::integer(k));
            if (out.size() > 10'000'000) type_error("range() too large for a chat template");
          }
          return Value::make_list(std::move(out));
        }));
  g.set("namespace", Value::function([](CallArgs& a) {
          Dict d;
          for (const Value& p : a.positional) {
            if (!p.is_dict()) type_error("namespace() positional argument must be a dict");
            for (const auto& [k, v] : p.dict->items) d.set(k, v);
          }
          for (const auto& [k, v] : a.keywords) d.set(k, v);
          return Value::make_namespace(std::move(d));
        }));
  g.set("dict", Value::function([](CallArgs& a) {
          Dict d;
          for (const Value& p : a.positional) {
            if (!p.is_dict()) type_error("dict() positional argument must be a dict");
            for (const auto& [k, v] : p.dict->items) d.set(k, v);
          }
          for (const auto& [k, v] : a.keywords) d.set(k, v);
          return Value::make_dict(std::move(d));
        }));
  g.set("raise_exception", Value::function([](CallArgs& a) -> Value {
          throw TemplateError("chat template raised: " + (a.positional.empty() ? std::string() : to_str(a.positional[0])));
        }));
  g.set("strftime_now", Value::function([](CallArgs& a) {
          const std::time_t now = std::time(nullptr);
          std::tm tm{};
          localtime_r(&now, &tm);
          char buf[256];
          const std::string fmt = a.positional.empty() ? std::string() : to_str(a.positional[0]);
          const std::size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
          return Value::string(std::string(buf, n));
        }));
  return g;
}

}  // namespace k2::jinja
