// Parsing model output back into structure: <think> reasoning, plain content and tool calls
// (Kimi-K2 sections with `functions.NAME:IDX` ids, DeepSeek-V3.1 sections). Never throws on
// malformed output: what cannot be parsed stays in `content`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace k2 {

struct ToolCall {
  std::string id;         // verbatim, e.g. "functions.get_weather:0" (Kimi); empty for DeepSeek
  std::string name;       // function name
  std::string arguments;  // raw argument text (normally a JSON object)
  int index = -1;         // the ":IDX" suffix of a Kimi id, or -1
  bool arguments_are_json = false;  // whether `arguments` parses as JSON
};

struct ParsedOutput {
  std::string reasoning;  // text inside <think>…</think>
  std::string content;    // everything else that is not a tool-call section
  std::vector<ToolCall> tool_calls;
};

enum class ToolCallFormat { Kimi, DeepSeek };

struct ParseOptions {
  ToolCallFormat format = ToolCallFormat::Kimi;
  // The prompt already opened a <think> block, so output starts inside it (reasoning until </think>).
  bool thinking_open = false;
};

ParsedOutput parse_model_output(std::string_view text, const ParseOptions& options = {});

}  // namespace k2
