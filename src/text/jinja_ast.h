// Syntax tree of the Jinja subset: expressions and statements as jinja_parser builds them and
// jinja_eval walks them. Plain data, no behaviour.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja_value.h"

namespace k2::jinja {

struct Expr;
using ExprPtr = std::shared_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,   // value
    Name,      // name
    GetAttr,   // a.name
    GetItem,   // a[b]
    Slice,     // a[b:c:d]; missing parts are null
    Call,      // a(args, kw=...)
    Filter,    // a | name(args)
    Test,      // a is [not] name(args)
    Not,       // not a
    Neg,       // -a
    Pos,       // +a
    Binary,    // a op b (op: + - * / // % ** ~ == != < > <= >= in "not in" and or)
    Cond,      // a if b else c  (children: a, b, c; c may be null)
    ListLit,   // [a, b]
    TupleLit,  // (a, b)
    DictLit,   // {k: v}  (children alternate key, value)
  };
  Kind kind;
  Value value;
  std::string name;  // Name/GetAttr/Filter/Test name, Binary operator
  bool negated = false;  // Test: "is not"
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  int line = 0;
  int depth = 1;  // levels of this tree (1 for a leaf); the parser bounds it
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, Block };
  explicit Node(Kind k) : kind(k) {}
  Kind kind;
  int line = 0;
  std::string text;  // Text
  ExprPtr expr;      // Output; Set value; For iterable
  // If: conditions[k] guards bodies[k]; a trailing extra body is the else branch.
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  // For: loop targets, optional filter; Set: target name(s) or namespace attribute; Macro: name.
  std::vector<std::string> targets;
  std::string attr;          // Set to ns.attr: the attribute ("targets[0]" is the namespace)
  ExprPtr filter;            // For ... if filter
  std::vector<std::pair<std::string, ExprPtr>> params;  // Macro parameters with defaults (may be null)
};

}  // namespace k2::jinja
