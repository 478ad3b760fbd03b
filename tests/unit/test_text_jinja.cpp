// Unit tests for the Jinja interpreter and the tool-call parser (text/jinja_eval.h,
// text/chat_template.h, text/tool_call_parser.h). Expected strings follow jinja2 3.1 semantics
// with transformers' settings (trim_blocks, lstrip_blocks, json.dumps tojson).
#include <gtest/gtest.h>

#include "text/chat_template.h"
#include "text/jinja_eval.h"
#include "text/tool_call_parser.h"

namespace {

std::string render(const std::string& src, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object()) {
  k2::jinja::Template t(src);
  k2::jinja::Dict d;
  for (const auto& [k, v] : vars.items()) d.set(k, k2::jinja::from_json(v));
  return t.render(d);
}

TEST(TextJinja, WhitespaceControl) {
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("{% if true %}\nx\n{% endif %}\ny"), "x\ny");         // trim_blocks
  EXPECT_EQ(render("  {% if true %}x{% endif %}"), "x");                  // lstrip_blocks
  EXPECT_EQ(render("a {{ 'b' }} c\n"), "a b c");                          // trailing newline dropped
  EXPECT_EQ(render("{# c #}\nx"), "x");
}

TEST(TextJinja, ScopesLoopsNamespacesMacros) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1,2] %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in [1,2] %}{% set ns.x = i %}{% endfor %}{{ ns.x }}"), "2");
  EXPECT_EQ(render("{% for i in range(5, -1, -2) %}{{ loop.index }}{{ i }}{% if loop.last %}!{% endif %}{% endfor %}"),
            "152331!");
  EXPECT_EQ(render("{% for i in range(9) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"), "012");
  EXPECT_EQ(render("{% macro m(a, b='d') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}"), "[1d][23]");
  EXPECT_EQ(render("{{ [1,2,3][:2] }}{{ 'abc'[::-1] }}{{ 'a b'.split(' ')[1] }}"), "[1, 2]cbab");
  EXPECT_EQ(render("{{ none }}|{{ undefined_name }}|{{ 1.0 }}|{{ 1e-5 }}|{{ true }}"), "None||1.0|1e-05|True");
  EXPECT_EQ(render("{{ x.get('a') }}{{ x['b'] is defined }}{{ 'a' in x }}", {{"x", {{"a", 1}}}}), "1FalseTrue");
}

TEST(TextJinja, TojsonIsPythonJsonDumps) {
  nlohmann::ordered_json v = {{"b", 1}, {"a", {1.5, nullptr, true, "é\n\"<>"}}};
  EXPECT_EQ(render("{{ v | tojson }}", {{"v", v}}), R"({"b": 1, "a": [1.5, null, true, "é\n\"<>"]})");
  EXPECT_EQ(render("{{ v | tojson(indent=2) }}", {{"v", {{"k", {1}}}}}), "{\n  \"k\": [\n    1\n  ]\n}");
}

TEST(TextJinja, ErrorsAreInputErrors) {
  EXPECT_THROW(render("{% if %}"), k2::InputError);
  EXPECT_THROW(render("{% include 'x' %}"), k2::InputError);
  EXPECT_THROW(render("{{ raise_exception('no') }}"), k2::InputError);
  EXPECT_THROW(render("{{ x.y.z }}"), k2::InputError);  // attribute of undefined
  // Integer literals beyond int64 (an uncaught std::out_of_range before; found by fuzz_jinja_parse).
  EXPECT_THROW(render("{{ 88888888888888888888888888 }}"), k2::InputError);
  EXPECT_THROW(render("{{ [1][99999999999999999999] }}"), k2::InputError);
  EXPECT_EQ(render("{{ 9223372036854775807 }}"), "9223372036854775807");
}

TEST(TextChatTemplate, DeepSortKeys) {
  const auto j = nlohmann::ordered_json::parse(R"([{"b": {"d": 1, "c": 2}, "a": [ {"z": 0, "y": 1} ]}])");
  EXPECT_EQ(k2::deep_sort_keys(j).dump(), R"([{"a":[{"y":1,"z":0}],"b":{"c":2,"d":1}}])");
}

TEST(TextChatTemplate, DeepJsonIsRefusedBeforeRecursion) {
  // 100,000 levels would overflow the stack in from_json / deep_sort_keys; the limit is kMaxJsonNesting.
  const auto deep = nlohmann::ordered_json::parse(std::string(100000, '[') + std::string(100000, ']'));  // iterative
  EXPECT_THROW(k2::jinja::from_json(deep), k2::InputError);
  EXPECT_THROW(k2::deep_sort_keys(deep), k2::InputError);
  nlohmann::ordered_json ok = 1;
  for (int i = 0; i < k2::jinja::kMaxJsonNesting; ++i) ok = nlohmann::ordered_json::array({std::move(ok)});
  EXPECT_NO_THROW(k2::jinja::from_json(ok));
  EXPECT_THROW(k2::jinja::from_json(nlohmann::ordered_json::array({ok})), k2::InputError);
}

// Found by fuzz/fuzz_jinja_parse: the recursive-descent parser (and rendering, and freeing the tree) recursed once
// per level, so a template such as 20,000 nested parentheses or a 40,000-link chain a~a~... overflowed the stack.
TEST(TextJinja, DeepNestingAndLongChainsAreSyntaxErrors) {
  const auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  for (const std::string& src :
       {"{{ " + repeat("(", 20000) + "1" + repeat(")", 20000) + " }}", "{{ " + repeat("[", 20000) + repeat("]", 20000) + " }}",
        "{{ " + repeat("not ", 20000) + "x }}", "{{ " + repeat("-", 20000) + "1 }}",
        repeat("{% if x %}", 20000) + repeat("{% endif %}", 20000), "{{ " + repeat("1 ~ ", 40000) + "1 }}",
        "{{ x" + repeat("|trim", 40000) + " }}", "{{ x" + repeat(".a", 40000) + " }}", "{{ f" + repeat("()", 40000) + " }}",
        "{{ 1" + repeat(" if 1 else 2", 40000) + " }}"}) {
    try {
      k2::jinja::Template t(src);
      ADD_FAILURE() << "accepted: " << src.substr(0, 40);
    } catch (const k2::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("levels deep"), std::string::npos) << e.what();
    }
  }
  // Ordinary depth still renders.
  EXPECT_EQ(render("{{ " + repeat("(", 50) + "1" + repeat(")", 50) + repeat(" ~ 2", 100) + " }}"), "1" + repeat("2", 100));
}

TEST(TextToolCalls, KimiSectionAndThinking) {
  const auto p = k2::parse_model_output(
      "<think>plan</think>ok<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
      "<|tool_call_argument_begin|>{\"city\": \"Beijing\"}<|tool_call_end|><|tool_calls_section_end|>");
  EXPECT_EQ(p.reasoning, "plan");
  EXPECT_EQ(p.content, "ok");
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(p.tool_calls[0].id, "functions.get_weather:0");
  EXPECT_EQ(p.tool_calls[0].name, "get_weather");
  EXPECT_EQ(p.tool_calls[0].index, 0);
  EXPECT_TRUE(p.tool_calls[0].arguments_are_json);
}

TEST(TextToolCalls, MalformedStaysText) {
  const std::string bad = "x<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0{";
  const auto p = k2::parse_model_output(bad);
  EXPECT_TRUE(p.tool_calls.empty());
  EXPECT_EQ(p.content, bad);
  const auto open = k2::parse_model_output("still thinking", {k2::ToolCallFormat::Kimi, true});
  EXPECT_EQ(open.reasoning, "still thinking");
  EXPECT_EQ(open.content, "");
}

}  // namespace
