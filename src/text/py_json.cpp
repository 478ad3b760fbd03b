// json.dumps re-implemented for Jinja values (see py_json.h); escapes follow CPython's json.encoder.
#include "text/py_json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "text/utf8.h"

namespace k2::jinja {
namespace {

void dump_string(const std::string& s, bool ensure_ascii, std::string& out) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 1;
    const char32_t c = utf8::decode(s, i, &len);
    char buf[16];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 | (v >> 10)),
                          static_cast<unsigned>(0xDC00 | (v & 0x3FF)));
          } else {
            std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          }
          out += buf;
        } else {
          out.append(s, i, len);
        }
    }
    i += len;
  }
  out.push_back('"');
}

void dump(const Value& v, const JsonDumpOptions& o, int level, std::string& out) {
  const auto newline = [&](int lvl) {
    out.push_back('\n');
    for (int k = 0; k < lvl; ++k) out += *o.indent;
  };
  switch (v.kind) {
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.b ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.i); return;
    case Value::Kind::Float:
      if (std::isnan(v.f)) out += "NaN";
      else if (std::isinf(v.f)) out += v.f > 0 ? "Infinity" : "-Infinity";
      else out += float_repr(v.f);
      return;
    case Value::Kind::String: dump_string(v.s, o.ensure_ascii, out); return;
    case Value::Kind::List: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      for (std::size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += o.item_separator;
        if (o.indent) newline(level + 1);
        dump((*v.list)[k], o, level + 1, out);
      }
      if (o.indent) newline(level);
      out.push_back(']');
      return;
    }
    case Value::Kind::Dict: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.dict->items) items.push_back(&kv);
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out.push_back('{');
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += o.item_separator;
        first = false;
        if (o.indent) newline(level + 1);
        dump_string(kv->first, o.ensure_ascii, out);
        out += o.key_separator;
        dump(kv->second, o, level + 1, out);
      }
      if (o.indent) newline(level);
      out.push_back('}');
      return;
    }
    default:
      throw TemplateError("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string python_json_dumps(const Value& v, const JsonDumpOptions& options) {
  std::string out;
  dump(v, options, 0, out);
  return out;
}

}  // namespace k2::jinja
