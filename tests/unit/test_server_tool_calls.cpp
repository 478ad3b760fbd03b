// ToolCallStream / OutputAssembler on tool-call sections: the same calls however the text is split,
// argument fragments streamed before the call ends, DeepSeek-V3.1's format, parallel_tool_calls=false,
// and the deltas' OpenAI shape (first with id and name, then arguments only).
#include <gtest/gtest.h>

#include "server/output_stream.h"

namespace k2 {
namespace {

struct Outcome {
  std::vector<std::vector<ToolCallDelta>> pushes;  // deltas per push
  std::vector<ToolCall> calls;
  std::string content;
  bool stopped = false;
};

Outcome assemble(const std::string& text, OutputOptions o, size_t piece) {
  OutputAssembler a(std::move(o));
  Outcome r;
  auto add = [&](OutputDelta d) {
    r.content += d.content;
    merge_tool_deltas(r.calls, d.tool_calls);
    r.pushes.push_back(std::move(d.tool_calls));
  };
  for (size_t i = 0; i < text.size() && !a.stopped(); i += piece) add(a.push(std::string_view(text).substr(i, piece)));
  r.stopped = a.stopped();
  add(a.finish());
  return r;
}

OutputOptions tools(ToolCallFormat f) {
  OutputOptions o;
  o.parse_tools = true;
  o.tool_format = f;
  return o;
}

const std::string kDeepSeek =
    "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜>"
    "<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

TEST(ServerToolCalls, DeepSeekFormatForAnySplit) {
  for (size_t piece : {1, 2, 5, 13, 1000}) {
    OutputOptions o = tools(ToolCallFormat::DeepSeek);
    o.first_call_number = 3;
    Outcome r = assemble(kDeepSeek, o, piece);
    EXPECT_EQ(r.content, "Checking.") << piece;
    ASSERT_EQ(r.calls.size(), 2u) << piece;
    EXPECT_EQ(r.calls[0].name, "get_weather");
    EXPECT_EQ(r.calls[0].id, "call_3");
    EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\"}");
    EXPECT_TRUE(r.calls[0].arguments_are_json);
    EXPECT_EQ(r.calls[1].name, "get_time");
    EXPECT_EQ(r.calls[1].id, "call_4");
    EXPECT_EQ(r.calls[1].arguments, "{}");
  }
  // Kimi markers mean nothing in DeepSeek mode, and the other way round.
  EXPECT_TRUE(assemble(kDeepSeek, tools(ToolCallFormat::Kimi), 3).calls.empty());
}

TEST(ServerToolCalls, ArgumentsStreamBeforeTheCallEnds) {
  const std::string text = "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|> "
                           "{\"text\": \"a long argument\"} <|tool_call_end|><|tool_calls_section_end|>";
  Outcome r = assemble(text, tools(ToolCallFormat::Kimi), 4);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, "{\"text\": \"a long argument\"}");  // trimmed, as the whole-text parser does
  int first = -1, fragments = 0;
  for (size_t i = 0; i < r.pushes.size(); ++i)
    for (const ToolCallDelta& d : r.pushes[i]) {
      if (!d.name.empty()) {
        EXPECT_EQ(first, -1);
        first = static_cast<int>(i);
        EXPECT_EQ(d.id, "functions.f:0");
        EXPECT_EQ(d.name, "f");
      } else {
        EXPECT_TRUE(d.id.empty());
        EXPECT_GT(static_cast<int>(i), first);
        ++fragments;
      }
    }
  EXPECT_GE(first, 0);
  EXPECT_GT(fragments, 3);  // pieces of 4 bytes: the arguments arrive in many deltas
}

TEST(ServerToolCalls, ParallelFalseStopsAfterTheFirstCall) {
  const std::string text = "<|tool_calls_section_begin|><|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{}"
                           "<|tool_call_end|><|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{}<|tool_call_end|>";
  OutputOptions o = tools(ToolCallFormat::Kimi);
  o.parallel_tool_calls = false;
  Outcome r = assemble(text, o, 3);
  EXPECT_TRUE(r.stopped);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "a");
  EXPECT_EQ(assemble(text, tools(ToolCallFormat::Kimi), 3).calls.size(), 2u);
}

TEST(ServerToolCalls, ForcedDeepSeekCallAndContentAfterSection) {
  OutputOptions o = tools(ToolCallFormat::DeepSeek);
  o.forced_tool_prefix = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>";
  Outcome r = assemble("{\"q\": 1}<｜tool▁call▁end｜><｜tool▁calls▁end｜> done", o, 2);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "f");
  EXPECT_EQ(r.calls[0].arguments, "{\"q\": 1}");
  EXPECT_EQ(r.content, " done");
  // The first delta (id and name) is out with the first push, before any argument text.
  ASSERT_FALSE(r.pushes.empty());
  ASSERT_FALSE(r.pushes[0].empty());
  EXPECT_EQ(r.pushes[0][0].name, "f");
}

TEST(ServerToolCalls, ThinkingOpenStartsAsReasoning) {
  OutputOptions o;
  o.thinking_open = true;
  OutputAssembler a(o);
  OutputDelta d = a.push("plan</think>answer");
  d.append(a.finish());
  EXPECT_EQ(d.reasoning, "plan");
  EXPECT_EQ(d.content, "answer");
}

}  // namespace
}  // namespace k2
