// OpenAI request parsing: fields land in ApiRequest, and each malformed field is refused with an
// ApiError naming it.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/openai_request.h"

namespace k2 {
namespace {

std::string param_of(const std::string& body, bool chat = true) {
  try {
    chat ? parse_chat_request(body) : parse_completion_request(body);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400) << body;
    return e.param().empty() ? "<none>" : e.param();
  }
  return "<accepted>";
}

TEST(ServerRequest, ChatFields) {
  ApiRequest r = parse_chat_request(R"({"model": "m", "messages": [{"role": "developer", "content": "be nice"},
      {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_completion_tokens": 7, "temperature": 0.5,
      "top_p": 0.9, "seed": 42, "stop": "x", "stream": true, "stream_options": {"include_usage": true},
      "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"})");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.messages[0]["role"], "system");  // developer is OpenAI's new name for system
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(r.tool_choice, ToolChoice::Required);
}

TEST(ServerRequest, ToolChoiceDefaults) {
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}]})").tool_choice, ToolChoice::None);
  ApiRequest named = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "f"}}})");
  EXPECT_EQ(named.tool_choice, ToolChoice::Named);
  EXPECT_EQ(named.tool_name, "f");
}

TEST(ServerRequest, AssistantToolCallsAndToolResults) {
  ApiRequest r = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"},
      {"role": "assistant", "tool_calls": [{"id": "functions.f:0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "functions.f:0", "content": "42"}]})");
  EXPECT_TRUE(r.messages[1]["content"].is_null());
  EXPECT_EQ(param_of(R"({"messages": [{"role": "tool", "content": "42"}]})"), "messages[0].tool_call_id");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x", "tool_calls": []}]})"), "messages[0].tool_calls");
}

TEST(ServerRequest, MalformedFieldsAreNamed) {
  EXPECT_EQ(param_of("{"), "<none>");
  EXPECT_EQ(param_of("null"), "<none>");
  EXPECT_EQ(param_of(R"({})"), "messages");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "temperature": -1})"), "temperature");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2.5})"), "max_tokens");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "stop": ["a", 1]})"), "stop");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]})"), "stop");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "n": 3})"), "n");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 0.5})"), "presence_penalty");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 0})"), "<accepted>");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"), "messages");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "model": 3})"), "model");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})"),
            "response_format");
}

TEST(ServerRequest, CompletionPrompts) {
  EXPECT_EQ(parse_completion_request(R"({"prompt": "abc"})").prompt, "abc");
  EXPECT_EQ(parse_completion_request(R"({"prompt": ["abc"]})").prompt, "abc");
  EXPECT_EQ(*parse_completion_request(R"({"prompt": [1, 2, 3]})").prompt_ids, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(*parse_completion_request(R"({"prompt": [[4, 5]]})").prompt_ids, (std::vector<int>{4, 5}));
  EXPECT_EQ(parse_completion_request(R"({"prompt": "abc"})").max_tokens, 16);  // the API's default
  EXPECT_EQ(param_of(R"({"prompt": ""})", false), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": {"a": 1}})", false), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": "x", "best_of": 2})", false), "best_of");
  EXPECT_EQ(param_of(R"({"prompt": "x", "suffix": "y"})", false), "suffix");
}

}  // namespace
}  // namespace k2
