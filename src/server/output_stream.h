// Turns streamed model text into what an OpenAI client sees: stop sequences cut the text (holding back
// a possible partial match), <think> blocks become reasoning, Kimi tool-call sections become tool calls.
// Text only: ids are decoded by the caller. Every byte pushed is released exactly once (or cut by a stop).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "text/tool_call_parser.h"

namespace k2 {

struct OutputDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;  // only from finish()
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

struct OutputOptions {
  bool parse_reasoning = true;  // a leading <think>…</think> becomes reasoning
  bool parse_tools = false;     // tool-call sections become tool calls
  std::vector<std::string> stop;  // stop sequences (cut before the match)
  // The prompt already opened a tool call (tool_choice "required" / a named function): its text, e.g.
  // "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>".
  std::string forced_tool_prefix;
  std::string forced_tool_id;   // id / name of a named forced call, used if the output is cut short
  std::string forced_tool_name;
};

class OutputAssembler {
 public:
  explicit OutputAssembler(OutputOptions options);

  // Adds generated text; returns the part that can be shown now.
  OutputDelta push(std::string_view text);
  // Ends the output (generation finished or cut): releases everything held back and the tool calls.
  OutputDelta finish();
  // A stop sequence matched: nothing after it will be released; the caller should stop generating.
  bool stopped() const { return stopped_; }

 private:
  enum class Mode { Start, Reasoning, Content, Tools };
  void route(std::string_view text, OutputDelta& out, bool final);

  OutputOptions options_;
  std::string stop_pending_;  // text that might begin a stop sequence
  std::string pending_;       // text after the stop filter, not yet routed (possible marker prefix)
  std::string tools_;         // the tool-call section(s), parsed at finish()
  Mode mode_;
  bool stopped_ = false;
  bool finished_ = false;
};

// Length of the longest suffix of `text` that is a proper prefix of one of `needles`.
size_t partial_suffix(std::string_view text, const std::vector<std::string_view>& needles);

}  // namespace k2
