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

// Item 1-3 of the hardening issue: one request must not take the server down or slip past a range check.
std::string nested(int depth, const std::string& leaf = "1") {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"a\":";
  s += leaf;
  for (int i = 0; i < depth; ++i) s += "}";
  return s;
}

TEST(ServerRequest, DeepNestingIsRefusedNotRecursedInto) {
  const std::string tools_head = R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function",
      "function": {"name": "f", "parameters": )";
  // 100,000 levels: a recursive copy or dump of this tree overflows an 8 MB stack.
  for (int depth : {70, 100000}) {
    try {
      parse_chat_request(tools_head + nested(depth) + "}}]}");
      ADD_FAILURE() << "accepted " << depth << " levels";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_NE(std::string(e.what()).find("nested more than 64 levels"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(param_of(R"({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
      "function": {"name": "f", "arguments": )" + nested(50000) + "}}]}]}"), "<none>");
  // Realistic schemas (a few dozen levels) still pass.
  EXPECT_NO_THROW(parse_chat_request(tools_head + nested(40) + "}}]}"));
}

TEST(ServerRequest, NumberOverflowIsA400) {
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "temperature": 1e400})"), "<none>");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e300})"), "max_tokens");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "seed": -1e300})"), "seed");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 4294967296})"), "logprobs");
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3.0})").max_tokens, 3);
}

TEST(ServerRequest, TokenIdsAreRangeCheckedAs64Bit) {
  // 2^40 truncated to 32 bits is 0, a valid id: it must be refused, not generated from.
  EXPECT_EQ(param_of(R"({"prompt": [1099511627776]})", false), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": [18446744073709551615]})", false), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": [4294967297]})", false), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": [-1]})", false), "prompt");
  EXPECT_EQ(*parse_completion_request(R"({"prompt": [2147483647]})").prompt_ids, (std::vector<int>{2147483647}));
}

}  // namespace
}  // namespace k2
