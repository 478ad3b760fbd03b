// Turns streamed model text into what an API client sees: stop sequences cut the text (holding back
// a possible partial match), a <think> block becomes reasoning, tool-call sections (Kimi-K2 or
// DeepSeek-V3.1) become tool-call deltas as they stream. Text only: ids are decoded by the caller.
// Every byte pushed is released exactly once (or cut by a stop).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/tool_calls.h"

namespace k2 {

struct OutputDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCallDelta> tool_calls;
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
  // Appends a later delta (argument fragments of the same call are joined).
  void append(OutputDelta d);
};

struct OutputOptions {
  bool parse_reasoning = true;  // a leading <think>…</think> becomes reasoning
  bool thinking_open = false;   // the prompt ended inside <think>: output starts as reasoning
  bool parse_tools = false;     // tool-call sections become tool calls
  ToolCallFormat tool_format = ToolCallFormat::Kimi;
  bool parallel_tool_calls = true;  // false: generation is cut after the first call
  int first_call_number = 0;        // tool calls earlier in the conversation (for ids)
  std::vector<std::string> stop;  // stop sequences (cut before the match)
  // The prompt already opened a tool call (tool_choice "required" / a named function): its text, e.g.
  // "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>".
  std::string forced_tool_prefix;
};

class OutputAssembler {
 public:
  explicit OutputAssembler(OutputOptions options);

  // Adds generated text; returns the part that can be shown now.
  OutputDelta push(std::string_view text);
  // Ends the output (generation finished or cut): releases everything held back.
  OutputDelta finish();
  // A stop sequence matched (or the one allowed tool call ended): nothing after it will be released;
  // the caller should stop generating.
  bool stopped() const { return stopped_; }
  // The stop sequence that matched, if one did.
  const std::string& matched_stop() const { return matched_stop_; }
  int tool_calls() const { return tools_ ? tools_->calls() : 0; }

 private:
  enum class Mode { Start, Reasoning, Content, Tools };
  void route(std::string_view text, OutputDelta& out, bool final);
  void open_tools(std::string_view opener);

  OutputOptions options_;
  std::string stop_pending_;  // text that might begin a stop sequence
  std::string pending_;       // text after the stop filter, not yet routed (possible marker prefix)
  std::string section_;       // raw text of the open tool-call section (shown as content if it holds no call)
  std::optional<ToolCallStream> tools_;
  std::vector<ToolCallDelta> forced_deltas_;  // what the forced prefix already opened
  int calls_before_section_ = 0;
  Mode mode_;
  bool stopped_ = false;
  bool finished_ = false;
  std::string matched_stop_;
};

// Length of the longest suffix of `text` that is a proper prefix of one of `needles`.
size_t partial_suffix(std::string_view text, const std::vector<std::string_view>& needles);

}  // namespace k2
