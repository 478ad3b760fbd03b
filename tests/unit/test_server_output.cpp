// OutputAssembler: stop sequences, <think> reasoning and Kimi tool-call sections, with the same result
// however the text is split into pushes (token boundaries fall anywhere).
#include <gtest/gtest.h>

#include "server/output_stream.h"

namespace k2 {
namespace {

struct Collected {
  OutputDelta all;
  std::vector<ToolCall> calls;  // the deltas merged
  bool stopped = false;
};

Collected run(const std::string& text, OutputOptions options, size_t piece) {
  OutputAssembler a(std::move(options));
  Collected c;
  auto add = [&](OutputDelta d) {
    merge_tool_deltas(c.calls, d.tool_calls);
    c.all.append(std::move(d));
  };
  for (size_t i = 0; i < text.size() && !a.stopped(); i += piece) add(a.push(std::string_view(text).substr(i, piece)));
  add(a.finish());
  c.stopped = a.stopped();
  return c;
}

TEST(ServerOutput, PartialSuffix) {
  EXPECT_EQ(partial_suffix("hello <thi", {"<think>"}), 4u);
  EXPECT_EQ(partial_suffix("hello", {"<think>"}), 0u);
  EXPECT_EQ(partial_suffix("ab", {"b", "abc"}), 2u);
  EXPECT_EQ(partial_suffix("x<think>", {"<think>"}), 0u);  // a whole match is not a partial one
}

TEST(ServerOutput, ReasoningThenContentForAnySplit) {
  const std::string text = "  <think>plan the answer</think>The answer is 4.";
  for (size_t piece : {1, 2, 3, 5, 100}) {
    Collected c = run(text, {}, piece);
    EXPECT_EQ(c.all.reasoning, "plan the answer") << piece;
    EXPECT_EQ(c.all.content, "The answer is 4.") << piece;
  }
}

TEST(ServerOutput, TextThatOnlyLooksLikeThinkIsContent) {
  EXPECT_EQ(run("<thinking is fun", {}, 1).all.content, "<thinking is fun");
  EXPECT_EQ(run("<thi", {}, 1).all.content, "<thi");  // flushed at the end
  OutputOptions no_reasoning;
  no_reasoning.parse_reasoning = false;
  EXPECT_EQ(run("<think>x</think>y", no_reasoning, 2).all.content, "<think>x</think>y");
}

TEST(ServerOutput, StopSequenceAcrossPushes) {
  OutputOptions o;
  o.stop = {"END", "zz"};
  for (size_t piece : {1, 2, 4, 64}) {
    Collected c = run("one two ENDthree", o, piece);
    EXPECT_TRUE(c.stopped) << piece;
    EXPECT_EQ(c.all.content, "one two ") << piece;
  }
  Collected partial = run("ends with EN", o, 1);  // a partial match at the end is released at finish
  EXPECT_FALSE(partial.stopped);
  EXPECT_EQ(partial.all.content, "ends with EN");
}

TEST(ServerOutput, ToolCallSection) {
  OutputOptions o;
  o.parse_tools = true;
  const std::string text =
      "Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
      "{\"city\": \"Paris\"}<|tool_call_end|><|tool_call_begin|>functions.get_time:1<|tool_call_argument_begin|>{}"
      "<|tool_call_end|><|tool_calls_section_end|>";
  for (size_t piece : {1, 7, 1000}) {
    Collected c = run(text, o, piece);
    EXPECT_EQ(c.all.content, "Let me check.") << piece;
    ASSERT_EQ(c.calls.size(), 2u) << piece;
    EXPECT_EQ(c.calls[0].name, "get_weather");
    EXPECT_EQ(c.calls[0].id, "functions.get_weather:0");
    EXPECT_EQ(c.calls[0].arguments, "{\"city\": \"Paris\"}");
    EXPECT_EQ(c.calls[1].name, "get_time");
  }
  // Without tools the markers are just text.
  EXPECT_EQ(run(text, {}, 3).all.content, text);
}

TEST(ServerOutput, MalformedSectionStaysContent) {
  OutputOptions o;
  o.parse_tools = true;
  const std::string text = "x<|tool_calls_section_begin|>garbage<|tool_calls_section_end|>";
  Collected c = run(text, o, 4);
  EXPECT_TRUE(c.calls.empty());
  EXPECT_EQ(c.all.content, text);
}

TEST(ServerOutput, ForcedCallCutShortIsStillReported) {
  OutputOptions o;
  o.parse_tools = true;
  o.forced_tool_prefix = "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:2<|tool_call_argument_begin|>";
  Collected cut = run("{\"a\": 1", o, 2);
  ASSERT_EQ(cut.calls.size(), 1u);
  EXPECT_EQ(cut.calls[0].id, "functions.f:2");
  EXPECT_EQ(cut.calls[0].arguments, "{\"a\": 1");
  Collected whole = run("{\"a\": 1}<|tool_call_end|><|tool_calls_section_end|>", o, 3);
  ASSERT_EQ(whole.calls.size(), 1u);
  EXPECT_EQ(whole.calls[0].arguments, "{\"a\": 1}");
  EXPECT_TRUE(whole.calls[0].arguments_are_json);
}

}  // namespace
}  // namespace k2
