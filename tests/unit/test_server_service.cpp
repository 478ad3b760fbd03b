// CompletionService with a scripted TokenGenerator and a byte-level test tokenizer carrying Kimi's
// special tokens: tool calls come back as tool calls, stop sequences cut and cancel, token limits and
// model names are checked, and a full queue surfaces as BusyError.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/completion_service.h"

namespace k2 {
namespace {

const std::vector<std::string> kSpecials = {"<|im_end|>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
                                            "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
                                            "<think>", "</think>", "[HIDDEN]"};

class ByteEncoder : public PieceEncoder {
 public:
  void encode(std::string_view text, std::vector<int>& out) const override {
    for (unsigned char c : text) out.push_back(c);
  }
};

std::unique_ptr<Tokenizer> byte_tokenizer() {
  std::vector<std::string> bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(std::string(1, static_cast<char>(i)));
  std::vector<AddedToken> specials;
  for (size_t i = 0; i < kSpecials.size(); ++i) {
    bytes.push_back(kSpecials[i]);
    specials.push_back(AddedToken{kSpecials[i], static_cast<int>(256 + i)});
  }
  return std::make_unique<Tokenizer>(Tokenizer::Format::HuggingFace, bytes, specials, std::make_unique<ByteEncoder>(), false);
}

// Emits its script synchronously inside submit(), as far as on_token lets it, then reports the end.
class ScriptedGenerator : public TokenGenerator {
 public:
  std::vector<int> script;
  bool busy = false;
  GenerationJob last;
  int emitted = 0;
  std::shared_ptr<JobHandle> handle;

  std::shared_ptr<JobHandle> submit(GenerationJob job) override {
    if (busy) throw BusyError("queue full");
    JobResult r;
    r.prompt_tokens = static_cast<int>(job.prompt.size());
    r.finish_reason = "length";
    emitted = 0;
    for (int id : script) {
      if (static_cast<int>(r.tokens.size()) == job.max_tokens) break;
      if (std::find(job.stop_tokens.begin(), job.stop_tokens.end(), id) != job.stop_tokens.end()) {
        r.finish_reason = "stop";
        break;
      }
      r.tokens.push_back(id);
      ++emitted;
      if (!job.on_token(id)) {
        r.finish_reason = "cancelled";
        break;
      }
    }
    job.on_done(r);
    last = std::move(job);
    handle = std::make_shared<JobHandle>();
    return handle;
  }
  WorkerStatus status() const override { return {}; }
};

class ServerService : public ::testing::Test {
 protected:
  std::unique_ptr<Tokenizer> tok = byte_tokenizer();
  ScriptedGenerator gen;
  ServiceOptions opts = [] {
    ServiceOptions o;
    o.model_name = "test-model";
    o.context = 200;
    o.default_max_tokens = 50;
    o.stop_tokens = {256};
    return o;
  }();
  CompletionService service{*tok, ChatTemplate("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
                                               nlohmann::ordered_json::object(), false),
                            gen, opts};

  std::vector<int> ids(const std::string& text) { return tok->encode(text, true); }

  struct Outcome {
    OutputDelta all;
    std::vector<ToolCall> calls;
    std::string finish;
    UsageCounts usage;
  };
  Outcome run(const std::string& body) {
    auto running = service.start(service.prepare(parse_chat_request(body)));
    Outcome o;
    for (int i = 0; i < 100; ++i) {
      Progress p = running->poll(std::chrono::milliseconds(10));
      merge_tool_deltas(o.calls, p.delta.tool_calls);
      o.all.append(std::move(p.delta));
      if (p.done) {
        if (p.error) std::rethrow_exception(p.error);
        o.finish = p.finish_reason;
        o.usage = running->usage();
        return o;
      }
    }
    ADD_FAILURE() << "request never finished";
    return o;
  }
};

TEST_F(ServerService, PlainAnswerStopsAtEndOfTurnAndHidesOtherSpecials) {
  gen.script = ids("Hi[HIDDEN] there<|im_end|>ignored");
  Outcome o = run(R"({"messages": [{"role": "user", "content": "hello"}]})");
  EXPECT_EQ(o.all.content, "Hi there");
  EXPECT_EQ(o.finish, "stop");
  EXPECT_EQ(o.usage.completion_tokens, 9);  // "Hi", [HIDDEN], " there"
  EXPECT_EQ(o.usage.prompt_tokens, static_cast<int>(ids("user: hello\n").size()));
  EXPECT_EQ(gen.last.max_tokens, 50);  // the server default when the request sets none
}

TEST_F(ServerService, ToolCallsBecomeToolCalls) {
  gen.script = ids("<think>need weather</think>On it.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
                   "<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|><|im_end|>");
  Outcome o = run(R"({"messages": [{"role": "user", "content": "weather?"}], "max_tokens": 150,
                      "tools": [{"type": "function", "function": {"name": "get_weather"}}]})");
  EXPECT_EQ(o.all.reasoning, "need weather");
  EXPECT_EQ(o.all.content, "On it.");
  ASSERT_EQ(o.calls.size(), 1u) << o.all.content;
  EXPECT_EQ(o.calls[0].name, "get_weather");
  EXPECT_EQ(o.calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(o.finish, "tool_calls");
}

TEST_F(ServerService, ForcedToolCallPrefixesThePrompt) {
  gen.script = ids("{\"x\": 1}<|tool_call_end|><|tool_calls_section_end|><|im_end|>");
  Outcome o = run(R"({"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": null,
      "tool_calls": [{"id": "functions.f:0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "functions.f:0", "content": "ok"}],
      "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "f"}}})");
  const std::string prompt = tok->decode(gen.last.prompt);
  EXPECT_NE(prompt.find("<|tool_calls_section_begin|><|tool_call_begin|>functions.f:1<|tool_call_argument_begin|>"),
            std::string::npos) << prompt;  // the second call of the conversation is numbered 1
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].id, "functions.f:1");
  EXPECT_EQ(o.calls[0].arguments, "{\"x\": 1}");
}

TEST_F(ServerService, RequiredWithSeveralToolsConstrainsTheFirstTokensToTheirHeaders) {
  gen.script = ids("functions.b:0<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|><|im_end|>");
  Outcome o = run(R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required",
      "tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]})");
  const std::string prompt = tok->decode(gen.last.prompt);
  EXPECT_EQ(prompt.substr(prompt.size() - 47), "<|tool_calls_section_begin|><|tool_call_begin|>");
  ASSERT_EQ(gen.last.sampling.forced_choices.size(), 2u);
  EXPECT_EQ(gen.last.sampling.forced_choices[0], ids("functions.a:0<|tool_call_argument_begin|>"));
  EXPECT_EQ(gen.last.sampling.forced_choices[1], ids("functions.b:0<|tool_call_argument_begin|>"));
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].name, "b");
  EXPECT_EQ(o.finish, "tool_calls");
}

TEST_F(ServerService, TemplateOptionsReachTheTemplate) {
  CompletionService with_kwargs{*tok, ChatTemplate("{{ greeting }}{% for m in messages %}{{ m.content }}|{% endfor %}"
                                                   "{% if add_generation_prompt %}GEN{% endif %}",
                                                   nlohmann::ordered_json::object(), false),
                                gen, [this] {
                                  ServiceOptions o = opts;
                                  o.chat_template_kwargs = {{"greeting", "hi:"}};
                                  return o;
                                }()};
  auto text = [&](const std::string& body) { return with_kwargs.prepare(parse_chat_request(body)).prompt_text; };
  EXPECT_EQ(text(R"({"messages": [{"role": "user", "content": "a"}]})"), "hi:a|GEN");
  EXPECT_EQ(text(R"({"messages": [{"role": "user", "content": "a"}], "add_generation_prompt": false,
                     "chat_template_kwargs": {"greeting": "yo:"}})"), "yo:a|");
  EXPECT_EQ(text(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b "}],
                     "continue_final_message": true})"), "hi:a|b ");
}

TEST_F(ServerService, StopSequenceCancelsGeneration) {
  gen.script = ids("abc STOP def and much more text that should never be generated");
  Outcome o = run(R"({"messages": [{"role": "user", "content": "x"}], "stop": ["STOP"]})");
  EXPECT_EQ(o.all.content, "abc ");
  EXPECT_EQ(o.finish, "stop");
  EXPECT_EQ(o.usage.completion_tokens, 8);  // through the token that completed the match
  EXPECT_TRUE(gen.handle->cancelled());     // and the generator was told to stop
}

TEST_F(ServerService, LimitsAndModelNames) {
  auto status_of = [&](const std::string& body) {
    try {
      service.prepare(parse_chat_request(body));
    } catch (const ApiError& e) {
      return e.status() * 1000 + (e.code() == "context_length_exceeded" ? 1 : 0);
    }
    return 200;
  };
  EXPECT_EQ(status_of(R"({"messages": [{"role": "user", "content": "x"}], "model": "test-model"})"), 200);
  EXPECT_EQ(status_of(R"({"messages": [{"role": "user", "content": "x"}], "model": "other"})"), 404000);
  EXPECT_EQ(status_of(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 180})"), 200);
  EXPECT_EQ(status_of(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 195})"), 400001);
  const std::string long_text(300, 'a');
  EXPECT_EQ(status_of(R"({"messages": [{"role": "user", "content": ")" + long_text + R"("}]})"), 400001);
  // Without max_tokens the completion gets what the context leaves (capped by the default).
  PreparedRequest p = service.prepare(parse_chat_request(R"({"messages": [{"role": "user", "content": ")" +
                                                         std::string(180, 'b') + R"("}]})"));
  EXPECT_EQ(p.max_tokens, 200 - static_cast<int>(p.prompt.size()));
}

TEST_F(ServerService, BusyGeneratorPropagates) {
  gen.busy = true;
  EXPECT_THROW(service.start(service.prepare(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}]})"))),
               BusyError);
}

}  // namespace
}  // namespace k2
