// libFuzzer target: compiling fuzzed chat-template text (the Jinja lexer and parser behind ChatTemplate).
// A template comes from a model folder or --chat-template: it is compiled or refused with an InputError.
// Fuzzed templates are not rendered: a valid one may legitimately loop for long (range(10**7)).
#include "core/error.h"
#include "fuzz_support.h"
#include "text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json specials = {{"bos_token", "[BOS]"}, {"eos_token", "[EOS]"}};
  try {
    const k2::ChatTemplate t(k2::fuzz::as_string(data, size), specials, false);
  } catch (const k2::InputError&) {
  }
  return 0;
}
