// Jinja interpreter: evaluates expressions with Python operator semantics and executes statements
// into an output string (see jinja_eval.h).
#include "text/jinja_eval.h"

#include <cmath>

#include "text/jinja_builtins.h"
#include "text/jinja_parser.h"

namespace k2::jinja {
namespace {

struct Frame {
  Dict vars;
  Frame* parent = nullptr;
};

enum class Flow { Normal, Break, Continue };

constexpr int kMaxCallDepth = 200;

class Interpreter {
 public:
  explicit Interpreter(Frame* globals) : globals_(globals) {}

  Flow exec(const Body& body, Frame* frame, std::string& out) {
    for (const Node& n : body) {
      const Flow f = exec_node(n, frame, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

 private:
  [[noreturn]] static void fail(int line, const std::string& what) {
    throw TemplateError("chat template error at line " + std::to_string(line) + ": " + what);
  }

  static Value lookup(Frame* frame, const std::string& name) {
    for (Frame* f = frame; f; f = f->parent)
      if (const Value* v = f->vars.find(name)) return *v;
    return Value::undefined();
  }

  Flow exec_node(const Node& n, Frame* frame, std::string& out) {
    switch (n.kind) {
      case Node::Kind::Text:
        out += n.text;
        return Flow::Normal;
      case Node::Kind::Output:
        out += to_str(eval(*n.expr, frame));
        return Flow::Normal;
      case Node::Kind::If:
        for (std::size_t k = 0; k < n.conditions.size(); ++k)
          if (truthy(eval(*n.conditions[k], frame))) return exec(n.bodies[k], frame, out);
        if (n.bodies.size() > n.conditions.size()) return exec(n.bodies.back(), frame, out);
        return Flow::Normal;
      case Node::Kind::For:
        exec_for(n, frame, out);
        return Flow::Normal;
      case Node::Kind::Set: {
        Value v = eval(*n.expr, frame);
        if (!n.attr.empty()) {
          Value ns = lookup(frame, n.targets[0]);
          if (ns.kind != Value::Kind::Namespace) fail(n.line, "cannot assign attribute on non-namespace object");
          ns.dict->set(n.attr, std::move(v));
        } else if (n.targets.size() == 1) {
          frame->vars.set(n.targets[0], std::move(v));
        } else {
          assign_unpacked(n.targets, v, frame, n.line);
        }
        return Flow::Normal;
      }
      case Node::Kind::SetBlock: {
        std::string captured;
        exec(n.bodies[0], frame, captured);
        frame->vars.set(n.targets[0], Value::string(captured));
        return Flow::Normal;
      }
      case Node::Kind::Macro:
        frame->vars.set(n.targets[0], make_macro(n));
        return Flow::Normal;
      case Node::Kind::Break:
        return Flow::Break;
      case Node::Kind::Continue:
        return Flow::Continue;
      case Node::Kind::Block:
        return exec(n.bodies[0], frame, out);
    }
    return Flow::Normal;
  }

  void assign_unpacked(const std::vector<std::string>& targets, const Value& v, Frame* frame, int line) {
    List items = iterate(v);
    if (items.size() != targets.size())
      fail(line, "cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(targets.size()));
    for (std::size_t k = 0; k < targets.size(); ++k) frame->vars.set(targets[k], items[k]);
  }

  void exec_for(const Node& n, Frame* frame, std::string& out) {
    List items = iterate(eval(*n.expr, frame));
    Frame loop_frame{{}, frame};
    if (n.filter) {
      List kept;
      for (const Value& item : items) {
        bind_targets(n, item, &loop_frame);
        if (truthy(eval(*n.filter, &loop_frame))) kept.push_back(item);
      }
      items.swap(kept);
    }
    const std::int64_t len = static_cast<std::int64_t>(items.size());
    for (std::int64_t k = 0; k < len; ++k) {
      bind_targets(n, items[static_cast<std::size_t>(k)], &loop_frame);
      Dict loop;
      loop.set("index", Value::integer(k + 1));
      loop.set("index0", Value::integer(k));
      loop.set("revindex", Value::integer(len - k));
      loop.set("revindex0", Value::integer(len - k - 1));
      loop.set("first", Value::boolean(k == 0));
      loop.set("last", Value::boolean(k == len - 1));
      loop.set("length", Value::integer(len));
      loop.set("previtem", k > 0 ? items[static_cast<std::size_t>(k - 1)] : Value::undefined());
      loop.set("nextitem", k + 1 < len ? items[static_cast<std::size_t>(k + 1)] : Value::undefined());
      loop_frame.vars.set("loop", Value::make_dict(std::move(loop)));
      if (exec(n.bodies[0], &loop_frame, out) == Flow::Break) break;
    }
    if (len == 0 && n.bodies.size() > 1) exec(n.bodies[1], frame, out);
  }

  void bind_targets(const Node& n, const Value& item, Frame* frame) {
    if (n.targets.size() == 1) frame->vars.set(n.targets[0], item);
    else assign_unpacked(n.targets, item, frame, n.line);
  }

  Value make_macro(const Node& n) {
    const Node* node = &n;
    return Value::function([this, node](CallArgs& args) {
      if (++depth_ > kMaxCallDepth) fail(node->line, "macro recursion too deep");
      Frame local{{}, globals_};
      std::size_t pos = 0;
      for (const auto& [name, def] : node->params) {
        if (pos < args.positional.size()) {
          local.vars.set(name, args.positional[pos]);
        } else if (const Value* kw = args.keyword(name)) {
          local.vars.set(name, *kw);
        } else {
          local.vars.set(name, def ? eval(*def, &local) : Value::undefined());
        }
        ++pos;
      }
      if (args.positional.size() > node->params.size()) fail(node->line, "macro '" + node->targets[0] + "' takes too many arguments");
      std::string out;
      exec(node->bodies[0], &local, out);
      --depth_;
      return Value::string(out);
    });
  }

  CallArgs eval_args(const Expr& e, std::size_t first_child, Frame* frame) {
    CallArgs a;
    for (std::size_t k = first_child; k < e.children.size(); ++k) a.positional.push_back(eval(*e.children[k], frame));
    for (const auto& [k, v] : e.kwargs) a.keywords.emplace_back(k, eval(*v, frame));
    return a;
  }

  Value eval(const Expr& e, Frame* frame) {
    switch (e.kind) {
      case Expr::Kind::Literal: return e.value;
      case Expr::Kind::Name: return lookup(frame, e.name);
      case Expr::Kind::GetAttr: return wrap(e, [&] { return get_attr(eval(*e.children[0], frame), e.name); });
      case Expr::Kind::GetItem:
        return wrap(e, [&] { return get_item(eval(*e.children[0], frame), eval(*e.children[1], frame)); });
      case Expr::Kind::Slice: {
        auto part = [&](std::size_t k) { return e.children[k] ? eval(*e.children[k], frame) : Value::none(); };
        return wrap(e, [&] { return slice(eval(*e.children[0], frame), part(1), part(2), part(3)); });
      }
      case Expr::Kind::Call: {
        Value fn = eval(*e.children[0], frame);
        if (fn.kind != Value::Kind::Function) fail(e.line, "'" + type_name(fn) + "' object is not callable");
        CallArgs a = eval_args(e, 1, frame);
        return wrap(e, [&] { return (*fn.fn)(a); });
      }
      case Expr::Kind::Filter: {
        Value v = eval(*e.children[0], frame);
        CallArgs a = eval_args(e, 1, frame);
        return wrap(e, [&] { return apply_filter(e.name, v, a); });
      }
      case Expr::Kind::Test: {
        Value v = eval(*e.children[0], frame);
        CallArgs a = eval_args(e, 1, frame);
        return wrap(e, [&] { return Value::boolean(apply_test(e.name, v, a) != e.negated); });
      }
      case Expr::Kind::Not: return Value::boolean(!truthy(eval(*e.children[0], frame)));
      case Expr::Kind::Neg:
      case Expr::Kind::Pos: {
        Value v = eval(*e.children[0], frame);
        if (v.kind == Value::Kind::Float) return Value::number(e.kind == Expr::Kind::Neg ? -v.f : v.f);
        if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool) {
          const std::int64_t x = v.kind == Value::Kind::Bool ? v.b : v.i;
          return Value::integer(e.kind == Expr::Kind::Neg ? -x : x);
        }
        fail(e.line, "bad operand type for unary -: '" + type_name(v) + "'");
      }
      case Expr::Kind::Cond:
        if (truthy(eval(*e.children[1], frame))) return eval(*e.children[0], frame);
        return e.children[2] ? eval(*e.children[2], frame) : Value::undefined();
      case Expr::Kind::ListLit:
      case Expr::Kind::TupleLit: {
        List l;
        for (const ExprPtr& c : e.children) l.push_back(eval(*c, frame));
        Value v = Value::make_list(std::move(l));
        v.is_tuple = e.kind == Expr::Kind::TupleLit;
        return v;
      }
      case Expr::Kind::DictLit: {
        Dict d;
        for (std::size_t k = 0; k + 1 < e.children.size(); k += 2) {
          Value key = eval(*e.children[k], frame);
          if (!key.is_string()) fail(e.line, "only string keys are supported in dict literals");
          d.set(key.s, eval(*e.children[k + 1], frame));
        }
        return Value::make_dict(std::move(d));
      }
      case Expr::Kind::Binary: return binary(e, frame);
    }
    fail(e.line, "unknown expression");
  }

  template <typename F>
  Value wrap(const Expr& e, F&& f) {
    try {
      return f();
    } catch (const TemplateError& err) {
      const std::string msg = err.what();
      if (msg.rfind("chat template", 0) == 0) throw;
      fail(e.line, msg);
    }
  }

  static double as_double(const Value& v) {
    return v.kind == Value::Kind::Float ? v.f : static_cast<double>(v.kind == Value::Kind::Bool ? v.b : v.i);
  }
  static std::int64_t as_i(const Value& v) { return v.kind == Value::Kind::Bool ? v.b : v.i; }
  static bool is_num(const Value& v) { return v.is_number(); }

  Value binary(const Expr& e, Frame* frame) {
    const std::string& op = e.name;
    if (op == "and") {
      Value a = eval(*e.children[0], frame);
      return truthy(a) ? eval(*e.children[1], frame) : a;
    }
    if (op == "or") {
      Value a = eval(*e.children[0], frame);
      return truthy(a) ? a : eval(*e.children[1], frame);
    }
    Value a = eval(*e.children[0], frame);
    Value b = eval(*e.children[1], frame);
    if (op == "~") return Value::string(to_str(a) + to_str(b));
    if (op == "==") return Value::boolean(equals(a, b));
    if (op == "!=") return Value::boolean(!equals(a, b));
    if (op == "in" || op == "not in") return wrap(e, [&] { return Value::boolean(contains(b, a) == (op == "in")); });
    if (a.is_undefined() || b.is_undefined()) fail(e.line, "an undefined value used in '" + op + "'");
    const bool floats = a.kind == Value::Kind::Float || b.kind == Value::Kind::Float;
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (is_num(a) && is_num(b)) {
        const double x = as_double(a), y = as_double(b);
        c = x < y ? -1 : (x > y ? 1 : 0);
      } else if (a.is_string() && b.is_string()) {
        c = a.s.compare(b.s);
      } else {
        fail(e.line, "'" + op + "' not supported between '" + type_name(a) + "' and '" + type_name(b) + "'");
      }
      return Value::boolean(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (op == "+") {
      if (is_num(a) && is_num(b)) return floats ? Value::number(as_double(a) + as_double(b)) : Value::integer(as_i(a) + as_i(b));
      if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
      if (a.is_list() && b.is_list()) {
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
    } else if (op == "-" && is_num(a) && is_num(b)) {
      return floats ? Value::number(as_double(a) - as_double(b)) : Value::integer(as_i(a) - as_i(b));
    } else if (op == "*") {
      if (is_num(a) && is_num(b)) return floats ? Value::number(as_double(a) * as_double(b)) : Value::integer(as_i(a) * as_i(b));
      if ((a.is_string() && b.kind == Value::Kind::Int) || (b.is_string() && a.kind == Value::Kind::Int)) {
        const std::string& s = a.is_string() ? a.s : b.s;
        std::string out;
        for (std::int64_t k = 0; k < (a.is_string() ? b.i : a.i); ++k) out += s;
        return Value::string(out);
      }
    } else if (op == "/" && is_num(a) && is_num(b)) {
      if (as_double(b) == 0) fail(e.line, "division by zero");
      return Value::number(as_double(a) / as_double(b));
    } else if ((op == "//" || op == "%") && is_num(a) && is_num(b)) {
      if (as_double(b) == 0) fail(e.line, "integer division or modulo by zero");
      if (floats) {
        const double q = std::floor(as_double(a) / as_double(b));
        return op == "//" ? Value::number(q) : Value::number(as_double(a) - q * as_double(b));
      }
      const std::int64_t x = as_i(a), y = as_i(b);
      std::int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
      return op == "//" ? Value::integer(q) : Value::integer(x - q * y);
    } else if (op == "**" && is_num(a) && is_num(b)) {
      if (!floats && as_i(b) >= 0) {
        std::int64_t r = 1;
        for (std::int64_t k = 0; k < as_i(b); ++k) r *= as_i(a);
        return Value::integer(r);
      }
      return Value::number(std::pow(as_double(a), as_double(b)));
    }
    fail(e.line, "unsupported operand types for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
  }

  Frame* globals_;
  int depth_ = 0;
};

}  // namespace

Template::Template(std::string_view source, const LexOptions& options) : body_(parse(lex(source, options))) {}

std::string Template::render(const Dict& variables) const {
  Frame builtins{default_globals(), nullptr};
  Frame globals{variables, &builtins};
  Interpreter interp(&globals);
  std::string out;
  interp.exec(body_, &globals, out);
  return out;
}

}  // namespace k2::jinja
