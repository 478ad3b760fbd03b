// libFuzzer target: parsing model output back into reasoning, content and tool calls (text/tool_call_parser.h)
// in both formats, with and without an open <think> block (the first byte). It never throws.
#include "fuzz_support.h"
#include "text/tool_call_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  k2::ParseOptions options;
  options.format = data[0] & 1 ? k2::ToolCallFormat::DeepSeek : k2::ToolCallFormat::Kimi;
  options.thinking_open = data[0] & 2;
  const std::string text = k2::fuzz::as_string(data + 1, size - 1);
  const k2::ParsedOutput out = k2::parse_model_output(text, options);
  k2::fuzz::check(out.reasoning.size() + out.content.size() <= text.size(), "parsed output longer than the text");
  return 0;
}
