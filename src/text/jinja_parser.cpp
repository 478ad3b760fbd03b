// Recursive-descent Jinja parser following jinja2's grammar and operator precedence
// (jinja2/parser.py: or > and > not > compare > + - > ~ > * / // % > ** > unary > postfix/filters).
#include "text/jinja_parser.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <initializer_list>
#include <string>

namespace k2::jinja {
namespace {

using TT = Token::Type;

// Statements, parentheses, lists, `not` and unary signs nest by recursion here, and rendering (and freeing)
// the tree recurses once per level of it, where chains such as a~b~c or x|f|g build one level per link:
// deeper nesting is a syntax error rather than a stack overflow. Real templates stay below 20 levels.
constexpr int kMaxNesting = 100;    // open blocks and nested expressions while parsing
constexpr int kMaxExprDepth = 256;  // levels of one expression's tree

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  Body parse_template() {
    std::string end;
    Body body = parse_body({}, &end);
    if (peek().type != TT::End) fail("unexpected tag");
    return body;
  }

 private:
  // One level of recursion into a nested construct, refused past kMaxNesting.
  class Nest {
   public:
    explicit Nest(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxNesting)
        p_.fail("blocks or expressions nested more than " + std::to_string(kMaxNesting) + " levels deep");
    }
    ~Nest() { --p_.depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser& p_;
  };

  // ---- token helpers
  const Token& peek(std::size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const Token& next() { return t_[std::min(i_++, t_.size() - 1)]; }
  // An integer literal (digits only, from the lexer) as int64; Python's ints are unbounded, ours are not, so a
  // longer one is a template error rather than an uncaught std::out_of_range (found by fuzz_jinja_parse).
  std::int64_t int_literal(const std::string& digits) const {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || end != digits.data() + digits.size())
      fail("integer literal " + (digits.size() > 30 ? digits.substr(0, 27) + "..." : digits) +
           " does not fit in 64 bits");
    return v;
  }

  [[noreturn]] void fail(const std::string& what) const {
    const Token& t = peek();
    throw TemplateError("chat template syntax error at line " + std::to_string(t.line) + ": " + what +
                        (t.value.empty() ? "" : " near '" + t.value + "'"));
  }
  bool is_op(const char* op, std::size_t k = 0) const { return peek(k).type == TT::Op && peek(k).value == op; }
  bool is_name(const char* n, std::size_t k = 0) const { return peek(k).type == TT::Name && peek(k).value == n; }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "'");
    ++i_;
  }
  void expect_name(const char* n) {
    if (!is_name(n)) fail(std::string("expected '") + n + "'");
    ++i_;
  }
  std::string expect_identifier() {
    if (peek().type != TT::Name) fail("expected a name");
    return next().value;
  }
  void expect_block_end() {
    if (peek().type != TT::BlockEnd) fail("expected end of tag");
    ++i_;
  }

  // ---- statements
  // Parses nodes until a block tag whose keyword is in `ends`; leaves i_ after that keyword.
  Body parse_body(std::initializer_list<const char*> ends, std::string* end_found) {
    const Nest nest(*this);
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == TT::End) {
        if (ends.size() != 0) fail(std::string("missing end tag (expected '") + *ends.begin() + "')");
        return body;
      }
      if (t.type == TT::Text) {
        Node n{Node::Kind::Text};
        n.text = t.value;
        n.line = t.line;
        body.push_back(std::move(n));
        ++i_;
      } else if (t.type == TT::VarBegin) {
        ++i_;
        Node n{Node::Kind::Output};
        n.line = t.line;
        n.expr = parse_tuple_or_expr();
        if (peek().type != TT::VarEnd) fail("expected '}}'");
        ++i_;
        body.push_back(std::move(n));
      } else if (t.type == TT::BlockBegin) {
        const Token& kw = peek(1);
        if (kw.type != TT::Name) {
          ++i_;
          fail("expected a tag name");
        }
        for (const char* e : ends) {
          if (kw.value == e) {
            i_ += 2;
            *end_found = kw.value;
            return body;
          }
        }
        i_ += 2;
        body.push_back(parse_statement(kw.value, kw.line));
      } else {
        fail("unexpected token");
      }
    }
  }

  Node parse_statement(const std::string& kw, int line) {
    if (kw == "if") return parse_if(line);
    if (kw == "for") return parse_for(line);
    if (kw == "set") return parse_set(line);
    if (kw == "macro") return parse_macro(line);
    if (kw == "break" || kw == "continue") {
      expect_block_end();
      Node n{kw == "break" ? Node::Kind::Break : Node::Kind::Continue};
      n.line = line;
      return n;
    }
    if (kw == "generation") {  // transformers' AssistantTracker: renders its body unchanged
      expect_block_end();
      Node n{Node::Kind::Block};
      n.line = line;
      std::string end;
      n.bodies.push_back(parse_body({"endgeneration"}, &end));
      expect_block_end();
      return n;
    }
    --i_;
    fail("unsupported Jinja tag '" + kw + "'");
  }

  Node parse_if(int line) {
    Node n{Node::Kind::If};
    n.line = line;
    n.conditions.push_back(parse_expr());
    expect_block_end();
    while (true) {
      std::string end;
      Body b = parse_body({"elif", "else", "endif"}, &end);
      n.bodies.push_back(std::move(b));
      if (end == "elif") {
        n.conditions.push_back(parse_expr());
        expect_block_end();
      } else if (end == "else") {
        expect_block_end();
        std::string end2;
        n.bodies.push_back(parse_body({"endif"}, &end2));
        expect_block_end();
        return n;
      } else {
        expect_block_end();
        return n;
      }
    }
  }

  Node parse_for(int line) {
    Node n{Node::Kind::For};
    n.line = line;
    n.targets.push_back(expect_identifier());
    while (is_op(",")) {
      ++i_;
      n.targets.push_back(expect_identifier());
    }
    expect_name("in");
    n.expr = parse_expr(/*allow_cond=*/false);
    if (is_name("if")) {
      ++i_;
      n.filter = parse_expr();
    }
    if (is_name("recursive")) fail("recursive loops are not supported");
    expect_block_end();
    std::string end;
    n.bodies.push_back(parse_body({"else", "endfor"}, &end));
    if (end == "else") {
      expect_block_end();
      std::string end2;
      n.bodies.push_back(parse_body({"endfor"}, &end2));
    }
    expect_block_end();
    return n;
  }

  Node parse_set(int line) {
    Node n{Node::Kind::Set};
    n.line = line;
    n.targets.push_back(expect_identifier());
    if (is_op(".")) {
      ++i_;
      n.attr = expect_identifier();
    } else {
      while (is_op(",")) {
        ++i_;
        n.targets.push_back(expect_identifier());
      }
    }
    if (peek().type == TT::BlockEnd && n.attr.empty() && n.targets.size() == 1) {
      ++i_;
      n.kind = Node::Kind::SetBlock;
      std::string end;
      n.bodies.push_back(parse_body({"endset"}, &end));
      expect_block_end();
      return n;
    }
    expect_op("=");
    n.expr = parse_tuple_or_expr();
    expect_block_end();
    return n;
  }

  Node parse_macro(int line) {
    Node n{Node::Kind::Macro};
    n.line = line;
    n.targets.push_back(expect_identifier());
    expect_op("(");
    while (!is_op(")")) {
      std::string p = expect_identifier();
      ExprPtr def;
      if (is_op("=")) {
        ++i_;
        def = parse_expr();
      }
      n.params.emplace_back(std::move(p), def);
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op(")");
    expect_block_end();
    std::string end;
    n.bodies.push_back(parse_body({"endmacro"}, &end));
    if (peek().type == TT::Name) ++i_;  // {% endmacro name %}
    expect_block_end();
    return n;
  }

  // ---- expressions
  ExprPtr make(Expr::Kind k, int line) {
    auto e = std::make_shared<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // Sets a node's depth once its operands are in place (theirs are set already), refusing deep trees.
  ExprPtr sealed(ExprPtr e) {
    int below = 0;
    for (const ExprPtr& c : e->children)
      if (c) below = std::max(below, c->depth);
    for (const auto& kv : e->kwargs)
      if (kv.second) below = std::max(below, kv.second->depth);
    e->depth = below + 1;
    if (e->depth > kMaxExprDepth)
      fail("an expression nested or chained more than " + std::to_string(kMaxExprDepth) + " levels deep");
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b) {
    ExprPtr e = make(Expr::Kind::Binary, a->line);
    e->name = op;
    e->children = {std::move(a), std::move(b)};
    return sealed(std::move(e));
  }

  // An expression, or a bare tuple "a, b" (as in {% set x = a, b %}).
  ExprPtr parse_tuple_or_expr() {
    ExprPtr first = parse_expr();
    if (!is_op(",")) return first;
    ExprPtr t = make(Expr::Kind::TupleLit, first->line);
    t->children.push_back(first);
    while (is_op(",")) {
      ++i_;
      if (peek().type == TT::BlockEnd || peek().type == TT::VarEnd) break;
      t->children.push_back(parse_expr());
    }
    return sealed(t);
  }

  ExprPtr parse_expr(bool allow_cond = true) {
    const Nest nest(*this);
    ExprPtr e = parse_or();
    if (!allow_cond) return e;
    while (is_name("if")) {
      ++i_;
      ExprPtr c = make(Expr::Kind::Cond, e->line);
      ExprPtr cond = parse_or();
      ExprPtr other;
      if (is_name("else")) {
        ++i_;
        other = parse_expr();
      }
      c->children = {e, cond, other};
      e = sealed(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      ++i_;
      e = binary("or", e, parse_and());
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      ++i_;
      e = binary("and", e, parse_not());
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      const Nest nest(*this);
      const int line = next().line;
      ExprPtr e = make(Expr::Kind::Not, line);
      e->children.push_back(parse_not());
      return sealed(e);
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    while (true) {
      if (peek().type == TT::Op && (is_op("==") || is_op("!=") || is_op("<") || is_op(">") || is_op("<=") || is_op(">="))) {
        const std::string op = next().value;
        e = binary(op, e, parse_math1());
      } else if (is_name("in")) {
        ++i_;
        e = binary("in", e, parse_math1());
      } else if (is_name("not") && is_name("in", 1)) {
        i_ += 2;
        e = binary("not in", e, parse_math1());
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = next().value;
      e = binary(op, e, parse_concat());
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      ++i_;
      e = binary("~", e, parse_math2());
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = next().value;
      e = binary(op, e, parse_pow());
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      ++i_;
      e = binary("**", e, parse_unary(true));
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Nest nest(*this);
      const Token& t = next();
      e = make(t.value == "-" ? Expr::Kind::Neg : Expr::Kind::Pos, t.line);
      e->children.push_back(parse_unary(false));
      e = sealed(e);
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters(e) : e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    if (t.type == TT::Name) {
      ++i_;
      if (t.value == "true" || t.value == "True") return literal(Value::boolean(true), t.line);
      if (t.value == "false" || t.value == "False") return literal(Value::boolean(false), t.line);
      if (t.value == "none" || t.value == "None") return literal(Value::none(), t.line);
      ExprPtr e = make(Expr::Kind::Name, t.line);
      e->name = t.value;
      return e;
    }
    if (t.type == TT::String) {
      std::string s;
      const int line = t.line;
      while (peek().type == TT::String) s += next().value;  // adjacent literals concatenate
      return literal(Value::string(s), line);
    }
    if (t.type == TT::Int) {
      ++i_;
      return literal(Value::integer(int_literal(t.value)), t.line);
    }
    if (t.type == TT::Float) {
      ++i_;
      // strtod, not stod: a literal beyond double's range is infinity, as in Python, not an exception.
      return literal(Value::number(std::strtod(t.value.c_str(), nullptr)), t.line);
    }
    if (is_op("(")) {
      ++i_;
      if (is_op(")")) {
        ++i_;
        return make(Expr::Kind::TupleLit, t.line);
      }
      ExprPtr first = parse_expr();
      if (is_op(")")) {
        ++i_;
        return first;
      }
      ExprPtr tup = make(Expr::Kind::TupleLit, t.line);
      tup->children.push_back(first);
      while (is_op(",")) {
        ++i_;
        if (is_op(")")) break;
        tup->children.push_back(parse_expr());
      }
      expect_op(")");
      return sealed(tup);
    }
    if (is_op("[")) {
      ++i_;
      ExprPtr l = make(Expr::Kind::ListLit, t.line);
      while (!is_op("]")) {
        l->children.push_back(parse_expr());
        if (!is_op(",")) break;
        ++i_;
      }
      expect_op("]");
      return sealed(l);
    }
    if (is_op("{")) {
      ++i_;
      ExprPtr d = make(Expr::Kind::DictLit, t.line);
      while (!is_op("}")) {
        d->children.push_back(parse_expr());
        expect_op(":");
        d->children.push_back(parse_expr());
        if (!is_op(",")) break;
        ++i_;
      }
      expect_op("}");
      return sealed(d);
    }
    fail("unexpected token in expression");
  }

  ExprPtr literal(Value v, int line) {
    ExprPtr e = make(Expr::Kind::Literal, line);
    e->value = std::move(v);
    return e;
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().type == TT::Name && is_op("=", 1)) {
        std::string k = next().value;
        ++i_;
        call.kwargs.emplace_back(std::move(k), parse_expr());
      } else {
        call.children.push_back(parse_expr());
      }
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        ++i_;
        ExprPtr a = make(Expr::Kind::GetAttr, e->line);
        if (peek().type == TT::Int) {
          a->kind = Expr::Kind::GetItem;
          a->children = {e, literal(Value::integer(int_literal(next().value)), e->line)};
        } else {
          a->name = expect_identifier();
          a->children = {e};
        }
        e = sealed(a);
      } else if (is_op("[")) {
        ++i_;
        ExprPtr parts[3];
        int n = 0;
        bool is_slice = false;
        while (true) {
          if (!is_op(":") && !is_op("]")) parts[n] = parse_expr();
          if (is_op(":") && n < 2) {
            is_slice = true;
            ++n;
            ++i_;
            continue;
          }
          break;
        }
        expect_op("]");
        ExprPtr g = make(is_slice ? Expr::Kind::Slice : Expr::Kind::GetItem, e->line);
        g->children = {e, parts[0], parts[1], parts[2]};
        if (!is_slice) {
          if (!parts[0]) fail("empty subscript");
          g->children.resize(2);
        }
        e = sealed(g);
      } else if (is_op("(")) {
        ExprPtr c = make(Expr::Kind::Call, e->line);
        c->children.push_back(e);
        parse_call_args(*c);
        e = sealed(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        ++i_;
        ExprPtr f = make(Expr::Kind::Filter, e->line);
        f->name = expect_identifier();
        while (is_op(".")) {
          ++i_;
          f->name += "." + expect_identifier();
        }
        f->children.push_back(e);
        if (is_op("(")) parse_call_args(*f);
        e = sealed(f);
      } else if (is_name("is")) {
        ++i_;
        ExprPtr t = make(Expr::Kind::Test, e->line);
        if (is_name("not")) {
          ++i_;
          t->negated = true;
        }
        t->name = expect_identifier();
        t->children.push_back(e);
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (peek().type == TT::String || peek().type == TT::Int || peek().type == TT::Float ||
                   (peek().type == TT::Name && !is_name("and") && !is_name("or") && !is_name("else") &&
                    !is_name("if") && !is_name("in") && !is_name("not") && !is_name("is"))) {
          t->children.push_back(parse_primary());  // e.g. "x is divisibleby 3", "x is sameas none"
        }
        e = sealed(t);
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& t_;
  std::size_t i_ = 0;
  int depth_ = 0;  // Nest levels open
};

}  // namespace

Body parse(const std::vector<Token>& tokens) { return Parser(tokens).parse_template(); }

}  // namespace k2::jinja
