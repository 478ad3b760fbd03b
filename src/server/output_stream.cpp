// Two stages, each with its own hold-back: the stop filter on the raw text, then the router that
// splits reasoning / content / tool sections at the markers of the Kimi chat format (spec §7.4).
#include "server/output_stream.h"

#include <algorithm>

namespace k2 {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
const std::vector<std::string_view> kSectionBegin = {"<|tool_calls_section_begin|>", "<|tool_call_section_begin|>"};
constexpr std::string_view kCallEnd = "<|tool_call_end|>";

size_t find_first(std::string_view text, const std::vector<std::string_view>& needles, size_t* len) {
  size_t best = std::string_view::npos;
  for (auto n : needles) {
    const size_t f = text.find(n);
    if (f < best) {
      best = f;
      *len = n.size();
    }
  }
  return best;
}

}  // namespace

size_t partial_suffix(std::string_view text, const std::vector<std::string_view>& needles) {
  size_t best = 0;
  for (auto n : needles)
    for (size_t len = std::min(text.size(), n.size() - 1); len > best; --len)
      if (text.substr(text.size() - len) == n.substr(0, len)) {
        best = len;
        break;
      }
  return best;
}

OutputAssembler::OutputAssembler(OutputOptions options) : options_(std::move(options)) {
  if (!options_.forced_tool_prefix.empty()) {
    mode_ = Mode::Tools;
    tools_ = options_.forced_tool_prefix;
  } else {
    mode_ = options_.parse_reasoning ? Mode::Start : Mode::Content;
  }
}

OutputDelta OutputAssembler::push(std::string_view text) {
  OutputDelta out;
  if (stopped_ || finished_) return out;
  stop_pending_.append(text);
  std::string_view s = stop_pending_;
  // Earliest stop match wins; everything before it is released, the rest is dropped.
  size_t cut = std::string_view::npos;
  for (const auto& stop : options_.stop) cut = std::min(cut, s.find(stop));
  if (cut != std::string_view::npos) {
    stopped_ = true;
    route(s.substr(0, cut), out, false);
    stop_pending_.clear();
    return out;
  }
  std::vector<std::string_view> stops(options_.stop.begin(), options_.stop.end());
  const size_t hold = partial_suffix(s, stops);
  route(s.substr(0, s.size() - hold), out, false);
  stop_pending_.erase(0, s.size() - hold);
  return out;
}

OutputDelta OutputAssembler::finish() {
  OutputDelta out;
  if (finished_) return out;
  finished_ = true;
  if (!stopped_) route(stop_pending_, out, true);
  else route("", out, true);
  stop_pending_.clear();
  if (mode_ == Mode::Tools) {
    ParsedOutput parsed = parse_model_output(tools_, ParseOptions{ToolCallFormat::Kimi, false});
    if (parsed.tool_calls.empty() && !options_.forced_tool_name.empty()) {
      // A forced call cut short (token limit, stop sequence): report what was generated of it.
      std::string_view args = std::string_view(tools_).substr(options_.forced_tool_prefix.size());
      args = args.substr(0, args.find(kCallEnd));
      ToolCall call;
      call.id = options_.forced_tool_id;
      call.name = options_.forced_tool_name;
      call.arguments = std::string(args);
      out.tool_calls.push_back(std::move(call));
    } else {
      out.content += parsed.content;
      out.tool_calls = std::move(parsed.tool_calls);
      // Text the model wrote before its calls inside a forced section is not part of any call.
      if (!options_.forced_tool_prefix.empty() && out.tool_calls.empty()) out.content = tools_.substr(options_.forced_tool_prefix.size());
    }
  }
  return out;
}

void OutputAssembler::route(std::string_view text, OutputDelta& out, bool final) {
  pending_.append(text);
  while (true) {
    std::string_view p = pending_;
    switch (mode_) {
      case Mode::Start: {
        // Wait until it is clear whether the output opens with <think> (after optional whitespace).
        const size_t lead = p.find_first_not_of(" \t\r\n");
        if (lead == std::string_view::npos) {
          if (!final) return;
          mode_ = Mode::Content;
          break;
        }
        std::string_view rest = p.substr(lead);
        if (rest.substr(0, kThinkOpen.size()) == kThinkOpen) {
          pending_.erase(0, lead + kThinkOpen.size());
          mode_ = Mode::Reasoning;
        } else if (!final && kThinkOpen.substr(0, rest.size()) == rest) {
          return;
        } else {
          mode_ = Mode::Content;
        }
        break;
      }
      case Mode::Reasoning: {
        const size_t close = p.find(kThinkClose);
        if (close != std::string_view::npos) {
          out.reasoning.append(p.substr(0, close));
          pending_.erase(0, close + kThinkClose.size());
          mode_ = Mode::Content;
          break;
        }
        const size_t hold = final ? 0 : partial_suffix(p, {kThinkClose});
        out.reasoning.append(p.substr(0, p.size() - hold));
        pending_.erase(0, p.size() - hold);
        return;
      }
      case Mode::Content: {
        if (options_.parse_tools) {
          size_t len = 0;
          const size_t b = find_first(p, kSectionBegin, &len);
          if (b != std::string_view::npos) {
            out.content.append(p.substr(0, b));
            tools_.append(p.substr(b));
            pending_.clear();
            mode_ = Mode::Tools;
            return;
          }
        }
        const size_t hold = final || !options_.parse_tools ? 0 : partial_suffix(p, kSectionBegin);
        out.content.append(p.substr(0, p.size() - hold));
        pending_.erase(0, p.size() - hold);
        return;
      }
      case Mode::Tools:
        tools_.append(p);
        pending_.clear();
        return;
    }
  }
}

}  // namespace k2
