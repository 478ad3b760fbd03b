// chat_prompt: continue_final_message marks and cuts as transformers' render_jinja_template does (expected
// strings worked out by hand from its rule), template kwargs merge over the server defaults.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/chat_prompt.h"

namespace k2 {
namespace {

using ojson = nlohmann::ordered_json;

TEST(ServerChatPrompt, ContinueFinalMessageCutsAtTheMarker) {
  const ojson msgs = ojson::parse(R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "The answer is "}])");
  const ojson marked = mark_final_message(msgs);
  EXPECT_EQ(marked[1]["content"], "The answer is CONTINUE_FINAL_MESSAGE_TAG ");
  EXPECT_EQ(marked[0], msgs[0]);
  // The template kept the marker's space: cut exactly there (the message's own trailing space stays).
  EXPECT_EQ(cut_at_final_message("<a>The answer is CONTINUE_FINAL_MESSAGE_TAG </a>", msgs), "<a>The answer is ");
  // The template stripped the content: cut and right-strip.
  EXPECT_EQ(cut_at_final_message("<a>The answer is CONTINUE_FINAL_MESSAGE_TAG</a>", msgs), "<a>The answer is");
  // A list content marks its last text part.
  const ojson parts = ojson::parse(R"([{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "ab"}]}])");
  EXPECT_EQ(mark_final_message(parts)[0]["content"][1]["text"], "abCONTINUE_FINAL_MESSAGE_TAG ");
  EXPECT_THROW(cut_at_final_message("<a></a>", msgs), ApiError);
  EXPECT_THROW(mark_final_message(ojson::parse(R"([{"role": "assistant", "content": null}])")), ApiError);
}

TEST(ServerChatPrompt, KwargsMergeAndReservedNames) {
  const ojson server = ojson::parse(R"({"thinking": false, "x": 1})");
  const ojson merged = merge_template_kwargs(server, ojson::parse(R"({"thinking": true})"));
  EXPECT_EQ(merged, ojson::parse(R"({"thinking": true, "x": 1})"));
  EXPECT_EQ(merge_template_kwargs(server, nullptr), server);
  EXPECT_THROW(merge_template_kwargs(server, ojson::parse(R"({"messages": []})")), ApiError);
}

TEST(ServerChatPrompt, ThinkingOpenPrompt) {
  EXPECT_TRUE(prompt_opens_thinking("<｜Assistant｜><think>"));
  EXPECT_TRUE(prompt_opens_thinking("<think>\n"));
  EXPECT_FALSE(prompt_opens_thinking("<｜Assistant｜></think>"));
  EXPECT_FALSE(prompt_opens_thinking(""));
}

}  // namespace
}  // namespace k2
