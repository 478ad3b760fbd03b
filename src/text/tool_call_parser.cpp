// Tolerant parser of reasoning blocks and tool-call sections in generated text (see tool_call_parser.h).
// Kimi's format is documented in MoonshotAI/Kimi-K2 docs/tool_call_guidance.md; the singular
// "<|tool_call_section_begin|>" spelling is accepted as other engines' parsers do (spec §7.4).
#include "text/tool_call_parser.h"

#include <nlohmann/json.hpp>

#include <initializer_list>

namespace k2 {
namespace {

struct Markers {
  std::vector<std::string_view> section_begin, section_end;
  std::string_view call_begin, arg_begin, call_end;
};

const Markers& markers(ToolCallFormat f) {
  static const Markers kimi{{"<|tool_calls_section_begin|>", "<|tool_call_section_begin|>"},
                            {"<|tool_calls_section_end|>", "<|tool_call_section_end|>"},
                            "<|tool_call_begin|>",
                            "<|tool_call_argument_begin|>",
                            "<|tool_call_end|>"};
  static const Markers deepseek{{"<｜tool▁calls▁begin｜>"}, {"<｜tool▁calls▁end｜>"}, "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
                                "<｜tool▁call▁end｜>"};
  return f == ToolCallFormat::Kimi ? kimi : deepseek;
}

// Earliest occurrence of any of the needles at or after pos; *len gets the matched needle's length.
std::size_t find_any(std::string_view s, const std::vector<std::string_view>& needles, std::size_t pos, std::size_t* len) {
  std::size_t best = std::string_view::npos;
  for (std::string_view n : needles) {
    const std::size_t f = s.find(n, pos);
    if (f < best) {
      best = f;
      *len = n.size();
    }
  }
  return best;
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const std::size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

void fill_name(ToolCall& call, ToolCallFormat format) {
  if (format == ToolCallFormat::DeepSeek) {
    call.name = call.id;
    call.id.clear();
    return;
  }
  // "functions.NAME:IDX": the name is between the first '.' and the last ':' (names may hold
  // neither in practice, but tolerate ids without the prefix or the index).
  std::string_view id = call.id;
  const std::size_t dot = id.find('.');
  std::string_view rest = dot == std::string_view::npos ? id : id.substr(dot + 1);
  const std::size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos) {
    const std::string_view idx = rest.substr(colon + 1);
    if (!idx.empty() && idx.size() < 9 && idx.find_first_not_of("0123456789") == std::string_view::npos) {
      call.index = std::stoi(std::string(idx));
      rest = rest.substr(0, colon);
    }
  }
  call.name = std::string(rest);
}

// Parses the calls inside one section body; false if any call is malformed.
bool parse_section(std::string_view body, const Markers& m, ToolCallFormat format, std::vector<ToolCall>& out) {
  std::vector<ToolCall> calls;
  std::size_t pos = 0;
  while (true) {
    const std::size_t b = body.find(m.call_begin, pos);
    if (b == std::string_view::npos) {
      if (!trim(body.substr(pos)).empty()) return false;
      break;
    }
    if (!trim(body.substr(pos, b - pos)).empty()) return false;
    const std::size_t a = body.find(m.arg_begin, b + m.call_begin.size());
    const std::size_t e = a == std::string_view::npos ? a : body.find(m.call_end, a + m.arg_begin.size());
    if (a == std::string_view::npos || e == std::string_view::npos) return false;
    // The id must not swallow another call.
    const std::string_view id = trim(body.substr(b + m.call_begin.size(), a - b - m.call_begin.size()));
    if (id.empty() || id.find(m.call_begin) != std::string_view::npos || id.find(m.call_end) != std::string_view::npos) return false;
    ToolCall call;
    call.id = std::string(id);
    call.arguments = std::string(trim(body.substr(a + m.arg_begin.size(), e - a - m.arg_begin.size())));
    call.arguments_are_json = nlohmann::json::accept(call.arguments);
    fill_name(call, format);
    if (call.name.empty()) return false;
    calls.push_back(std::move(call));
    pos = e + m.call_end.size();
  }
  if (calls.empty()) return false;
  out.insert(out.end(), calls.begin(), calls.end());
  return true;
}

}  // namespace

ParsedOutput parse_model_output(std::string_view text, const ParseOptions& options) {
  ParsedOutput result;
  std::string_view rest = text;
  // Reasoning: an opening <think> at the start (after whitespace), or an already-open block.
  constexpr std::string_view kOpen = "<think>", kClose = "</think>";
  const std::size_t lead = rest.find_first_not_of(" \t\r\n");
  const bool opens = lead != std::string_view::npos && rest.substr(lead, kOpen.size()) == kOpen;
  if (opens || options.thinking_open) {
    const std::size_t start = opens ? lead + kOpen.size() : 0;
    const std::size_t close = rest.find(kClose, start);
    if (close == std::string_view::npos) {
      result.reasoning = std::string(rest.substr(start));  // still thinking (truncated output)
      return result;
    }
    result.reasoning = std::string(rest.substr(start, close - start));
    rest = rest.substr(close + kClose.size());
  }
  const Markers& m = markers(options.format);
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    std::size_t blen = 0;
    const std::size_t b = find_any(rest, m.section_begin, pos, &blen);
    if (b == std::string_view::npos) {
      result.content.append(rest.substr(pos));
      break;
    }
    std::size_t elen = 0;
    const std::size_t e = find_any(rest, m.section_end, b + blen, &elen);
    const std::size_t body_end = e == std::string_view::npos ? rest.size() : e;
    const std::size_t next = e == std::string_view::npos ? rest.size() : e + elen;
    std::vector<ToolCall> calls;
    const bool ok = parse_section(rest.substr(b + blen, body_end - b - blen), m, options.format, calls);
    if (ok) {
      result.content.append(rest.substr(pos, b - pos));
      result.tool_calls.insert(result.tool_calls.end(), calls.begin(), calls.end());
    } else {
      result.content.append(rest.substr(pos, next - pos));  // malformed: keep the text as it was
    }
    pos = next;
    if (next >= rest.size()) break;
  }
  return result;
}

}  // namespace k2
