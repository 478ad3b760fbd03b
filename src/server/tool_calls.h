// Tool-call sections of generated text, parsed as they stream: Kimi-K2's
// (<|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>ARGS<|tool_call_end|>) and DeepSeek-V3.1's
// (<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>). Emits OpenAI-style deltas: the first delta of a call
// carries its id and name, later ones argument fragments. Text only; no JSON validation of arguments.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "text/tool_call_parser.h"

namespace k2 {

// One streamed piece of a tool call. `index` is the call's position in the answer (0, 1, ...).
struct ToolCallDelta {
  int index = 0;
  std::string id;         // first delta of a call only
  std::string name;       // first delta of a call only
  std::string arguments;  // a fragment (may be empty on the first delta)
};

// Deltas merged into whole calls (the non-streamed answer).
void merge_tool_deltas(std::vector<ToolCall>& calls, const std::vector<ToolCallDelta>& deltas);

struct ToolMarkers {
  std::vector<std::string> section_begin;  // accepted spellings of the section opener; [0] is the one written
  std::vector<std::string> section_end;
  std::string call_begin, arg_begin, call_end;
};
const ToolMarkers& tool_markers(ToolCallFormat format);

// The format a chat template writes tool calls in (DeepSeek's markers in its source, else Kimi's).
ToolCallFormat tool_format_of_template(std::string_view template_source);

// The id the server gives call `n` of a conversation: Kimi's own "functions.NAME:n", else "call_n".
std::string tool_call_id(ToolCallFormat format, const std::string& name, int n);

// The text inside a tool-call section, fed after its opener has been consumed by the caller.
class ToolCallStream {
 public:
  // first_call_number: calls earlier in the conversation (ids count across it). parallel = false: the
  // section ends after the first call.
  ToolCallStream(ToolCallFormat format, int first_call_number, bool parallel);

  // Feeds section text. Returns true once the section is over (closing marker, the one allowed call
  // done, or malformed text); then rest() holds the text after it, which is not part of any call.
  bool push(std::string_view text, std::vector<ToolCallDelta>& out);
  // The generated text ended: a call still open is closed as far as it got.
  void finish(std::vector<ToolCallDelta>& out);

  bool over() const { return state_ == State::Over; }
  int calls() const { return calls_; }  // calls started
  bool malformed() const { return malformed_; }
  std::string take_rest() { return std::move(rest_); }

 private:
  enum class State { Between, Header, Args, Over };
  void start_call(std::string_view header, std::vector<ToolCallDelta>& out);
  void end(std::string rest, bool malformed);

  ToolCallFormat format_;
  const ToolMarkers& m_;
  int next_number_;
  bool parallel_;
  State state_ = State::Between;
  std::string buf_;        // text not yet consumed (possible partial marker, header, trailing spaces)
  bool args_started_ = false;
  int calls_ = 0;
  bool malformed_ = false;
  std::string rest_;
};

}  // namespace k2
