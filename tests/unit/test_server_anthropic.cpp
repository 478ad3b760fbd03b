// Anthropic Messages translation: blocks become the chat messages the templates render (tool results
// as tool messages, tool_use as tool_calls, thinking as reasoning_content), tool_choice maps onto
// OpenAI's, refusals name the field, and the streamed events open and close one block at a time.
#include <gtest/gtest.h>

#include "server/anthropic_messages.h"
#include "server/api_error.h"

namespace k2 {
namespace {

using ojson = nlohmann::ordered_json;

TEST(ServerAnthropic, BlocksBecomeChatMessages) {
  ApiRequest r = parse_messages_request(R"({"model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "S"}],
    "stop_sequences": ["a", "b", "c", "d", "e"], "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
    "messages": [{"role": "user", "content": "Q"},
                 {"role": "assistant", "content": [{"type": "thinking", "thinking": "T", "signature": "x"},
                                                   {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "R"}]},
                                              {"type": "text", "text": "more"}]}]})");
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[0], ojson::parse(R"({"role": "system", "content": "S"})"));
  EXPECT_EQ(r.messages[2]["reasoning_content"], "T");
  EXPECT_EQ(r.messages[2]["tool_calls"][0]["function"]["arguments"], "{\"x\": 1}");  // json.dumps spacing
  EXPECT_EQ(r.messages[3], ojson::parse(R"({"role": "tool", "tool_call_id": "t1", "content": "R"})"));
  EXPECT_EQ(r.messages[4]["content"], "more");
  EXPECT_EQ(r.tool_choice, ToolChoice::Required);
  EXPECT_FALSE(r.parallel_tool_calls);
  EXPECT_EQ(r.stop.size(), 5u);
  EXPECT_EQ(*r.max_tokens, 9);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);  // Anthropic's default
}

TEST(ServerAnthropic, RefusalsNameTheField) {
  auto param_of = [](const std::string& body) {
    try {
      parse_messages_request(body);
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      return e.param();
    }
    return std::string("accepted");
  };
  EXPECT_EQ(param_of(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})"), "max_tokens");
  EXPECT_EQ(param_of(R"({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image"}]}]})"),
            "messages[0].content[0].type");
  EXPECT_EQ(param_of(R"({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
                         "tool_choice": {"type": "tool", "name": "g"}, "tools": [{"name": "f", "input_schema": {}}]})"),
            "tool_choice");
  EXPECT_EQ(anthropic_error_json(401, "k")["error"]["type"], "authentication_error");
  EXPECT_EQ(anthropic_error_json(529, "k")["error"]["type"], "overloaded_error");
}

TEST(ServerAnthropic, EventsOpenAndCloseOneBlockAtATime) {
  AnthropicEventStream s("msg_1", "m");
  std::string all = s.start(10);
  OutputDelta a;
  a.reasoning = "think";
  a.content = "text";
  all += s.update(a);
  OutputDelta b;
  b.tool_calls = {ToolCallDelta{0, "id0", "f", ""}, ToolCallDelta{0, "", "", "{\"x\""}, ToolCallDelta{1, "id1", "g", "{}"}};
  all += s.update(b);
  UsageCounts u;
  u.completion_tokens = 3;
  all += s.finish("tool_calls", "", u);
  std::vector<std::string> names;
  for (size_t pos = 0; (pos = all.find("event: ", pos)) != std::string::npos; pos += 7)
    names.push_back(all.substr(pos + 7, all.find('\n', pos) - pos - 7));
  const std::vector<std::string> want = {"message_start", "ping",
                                         "content_block_start", "content_block_delta", "content_block_stop",   // thinking
                                         "content_block_start", "content_block_delta", "content_block_stop",   // text
                                         "content_block_start", "content_block_delta", "content_block_stop",   // tool 0
                                         "content_block_start", "content_block_delta", "content_block_stop",   // tool 1
                                         "message_delta", "message_stop"};
  EXPECT_EQ(names, want);
  EXPECT_NE(all.find(R"("stop_reason":"tool_use")"), std::string::npos);
  EXPECT_NE(all.find(R"({"type":"input_json_delta","partial_json":"{\"x\""})"), std::string::npos);
}

}  // namespace
}  // namespace k2
