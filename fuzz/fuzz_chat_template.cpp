// libFuzzer target: a real chat template (Kimi-K2-Thinking, Kimi-K2-Instruct or DeepSeek-V3.1, by the
// first byte) rendered for a fuzzed chat request body, on the server's path: parse_chat_request, the
// template kwargs and continue_final_message, then ChatTemplate::render. Refusals are InputErrors.
#include "core/error.h"
#include "fuzz_support.h"
#include "server/api_error.h"
#include "server/chat_prompt.h"
#include "server/openai_request.h"
#include "text/chat_template.h"

namespace {

const k2::ChatTemplate& template_for(uint8_t pick) {
  static const nlohmann::ordered_json specials = {{"bos_token", "[BOS]"}, {"eos_token", "[EOS]"}};
  static const k2::ChatTemplate kimi_thinking(k2::fuzz::read_file_or_die(K2_FUZZ_TEMPLATES "/kimi-k2-thinking.jinja"),
                                              specials, true);
  static const k2::ChatTemplate kimi_instruct(k2::fuzz::read_file_or_die(K2_FUZZ_TEMPLATES "/kimi-k2-instruct.jinja"),
                                              specials, true);
  static const k2::ChatTemplate deepseek(k2::fuzz::read_file_or_die(K2_FUZZ_TEMPLATES "/deepseek-v3.1.jinja"),
                                         specials, false);
  return pick % 3 == 0 ? kimi_thinking : pick % 3 == 1 ? kimi_instruct : deepseek;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const k2::ChatTemplate& tmpl = template_for(data[0]);
  try {
    const k2::ApiRequest r = k2::parse_chat_request(k2::fuzz::as_string(data + 1, size - 1));
    k2::ChatRenderOptions options;
    options.tools = r.tools;
    options.add_generation_prompt = r.add_generation_prompt.value_or(!r.continue_final_message);
    options.extra = k2::merge_template_kwargs(nlohmann::ordered_json::object(), r.chat_template_kwargs);
    if (r.continue_final_message) {
      const nlohmann::ordered_json marked = k2::mark_final_message(r.messages);
      (void)k2::cut_at_final_message(tmpl.render(marked, options), marked);
    } else {
      (void)tmpl.render(r.messages, options);
    }
  } catch (const k2::InputError&) {
  }
  return 0;
}
