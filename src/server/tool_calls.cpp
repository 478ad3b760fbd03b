// Incremental tool-call parsing (see tool_calls.h). Marker spellings follow the chat templates in the
// model folders (Kimi-K2-Thinking, DeepSeek-V3.1); Kimi's singular "<|tool_call_section_begin|>" is
// accepted as text/tool_call_parser.cpp does. Arguments are passed on as generated, whitespace-trimmed.
#include "server/tool_calls.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "server/output_stream.h"

namespace k2 {
namespace {

constexpr const char* kWs = " \t\r\n";
constexpr size_t kMaxHeader = 512;  // a function id longer than this is not a header but runaway text

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(kWs);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kWs) - b + 1);
}

// Kimi ids are "functions.NAME:IDX": the name lies between the first '.' and a numeric ":IDX" suffix.
std::string kimi_name(std::string_view id) {
  const size_t dot = id.find('.');
  std::string_view rest = dot == std::string_view::npos ? id : id.substr(dot + 1);
  const size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos) {
    const std::string_view idx = rest.substr(colon + 1);
    if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string_view::npos) rest = rest.substr(0, colon);
  }
  return std::string(rest);
}

}  // namespace

void merge_tool_deltas(std::vector<ToolCall>& calls, const std::vector<ToolCallDelta>& deltas) {
  for (const ToolCallDelta& d : deltas) {
    if (d.index < 0) continue;
    if (static_cast<size_t>(d.index) >= calls.size()) calls.resize(d.index + 1);
    ToolCall& c = calls[d.index];
    if (!d.id.empty()) c.id = d.id;
    if (!d.name.empty()) c.name = d.name;
    c.arguments += d.arguments;
  }
  for (ToolCall& c : calls) c.arguments_are_json = nlohmann::json::accept(c.arguments);
}

const ToolMarkers& tool_markers(ToolCallFormat format) {
  static const ToolMarkers kimi{{"<|tool_calls_section_begin|>", "<|tool_call_section_begin|>"},
                                {"<|tool_calls_section_end|>", "<|tool_call_section_end|>"},
                                "<|tool_call_begin|>",
                                "<|tool_call_argument_begin|>",
                                "<|tool_call_end|>"};
  static const ToolMarkers deepseek{{"<｜tool▁calls▁begin｜>"}, {"<｜tool▁calls▁end｜>"}, "<｜tool▁call▁begin｜>",
                                    "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"};
  return format == ToolCallFormat::DeepSeek ? deepseek : kimi;
}

ToolCallFormat tool_format_of_template(std::string_view source) {
  return source.find("<｜tool▁calls▁begin｜>") != std::string_view::npos &&
                 source.find("<|tool_calls_section_begin|>") == std::string_view::npos
             ? ToolCallFormat::DeepSeek
             : ToolCallFormat::Kimi;
}

std::string tool_call_id(ToolCallFormat format, const std::string& name, int n) {
  return format == ToolCallFormat::Kimi ? fmt::format("functions.{}:{}", name, n) : fmt::format("call_{}", n);
}

ToolCallStream::ToolCallStream(ToolCallFormat format, int first_call_number, bool parallel)
    : format_(format), m_(tool_markers(format)), next_number_(first_call_number), parallel_(parallel) {}

void ToolCallStream::start_call(std::string_view header, std::vector<ToolCallDelta>& out) {
  ToolCallDelta d;
  d.index = calls_++;
  if (format_ == ToolCallFormat::Kimi) {
    d.id = std::string(header);
    d.name = kimi_name(header);
  } else {
    d.name = std::string(header);
    d.id = tool_call_id(format_, d.name, next_number_);
  }
  ++next_number_;
  out.push_back(std::move(d));
  args_started_ = false;
}

void ToolCallStream::end(std::string rest, bool malformed) {
  state_ = State::Over;
  rest_ = std::move(rest);
  malformed_ = malformed;
  buf_.clear();
}

bool ToolCallStream::push(std::string_view text, std::vector<ToolCallDelta>& out) {
  if (state_ == State::Over) {
    rest_.append(text);
    return true;
  }
  buf_.append(text);
  while (true) {
    switch (state_) {
      case State::Between: {
        const size_t b = buf_.find_first_not_of(kWs);
        if (b == std::string::npos) return false;
        std::string_view s = std::string_view(buf_).substr(b);
        if (starts_with(s, m_.call_begin)) {
          buf_.erase(0, b + m_.call_begin.size());
          state_ = State::Header;
          break;
        }
        bool waiting = starts_with(m_.call_begin, s);
        for (const std::string& e : m_.section_end) {
          if (starts_with(s, e)) {
            end(std::string(s.substr(e.size())), false);
            return true;
          }
          waiting = waiting || starts_with(e, s);
        }
        if (waiting) return false;
        end(std::string(s), true);
        return true;
      }
      case State::Header: {
        const size_t a = buf_.find(m_.arg_begin);
        const size_t bad = std::min(buf_.find(m_.call_begin), buf_.find(m_.call_end));
        if (a == std::string::npos || bad < a) {
          if (bad != std::string::npos || buf_.size() > kMaxHeader) {
            end(std::move(buf_), true);
            return true;
          }
          return false;
        }
        const std::string_view header = trim(std::string_view(buf_).substr(0, a));
        if (header.empty()) {
          end(std::move(buf_), true);
          return true;
        }
        start_call(header, out);
        buf_.erase(0, a + m_.arg_begin.size());
        state_ = State::Args;
        break;
      }
      case State::Args: {
        const size_t e = buf_.find(m_.call_end);
        std::string_view s = buf_;
        if (!args_started_) s = s.substr(std::min(s.size(), s.find_first_not_of(kWs)));
        const size_t skipped = buf_.size() - s.size();
        if (e == std::string::npos) {
          // Hold back a possible partial closing marker and trailing whitespace (arguments are trimmed).
          std::string_view emit = s.substr(0, s.size() - partial_suffix(s, {m_.call_end}));
          const size_t keep = emit.find_last_not_of(kWs);
          emit = keep == std::string_view::npos ? std::string_view{} : emit.substr(0, keep + 1);
          if (!emit.empty()) {
            out.push_back(ToolCallDelta{calls_ - 1, "", "", std::string(emit)});
            args_started_ = true;
          }
          buf_.erase(0, skipped + emit.size());
          return false;
        }
        const std::string_view last = trim(std::string_view(buf_).substr(skipped, e - std::min(e, skipped)));
        if (!last.empty()) out.push_back(ToolCallDelta{calls_ - 1, "", "", std::string(last)});
        buf_.erase(0, e + m_.call_end.size());
        state_ = State::Between;
        if (!parallel_) {
          end("", false);
          return true;
        }
        break;
      }
      case State::Over:
        return true;
    }
  }
}

void ToolCallStream::finish(std::vector<ToolCallDelta>& out) {
  if (state_ == State::Args) {
    std::string_view s = args_started_ ? std::string_view(buf_) : trim(buf_);
    if (args_started_) s = s.substr(0, s.find_last_not_of(kWs) + 1);
    if (!s.empty()) out.push_back(ToolCallDelta{calls_ - 1, "", "", std::string(s)});
  }
  if (state_ == State::Header && calls_ == 0) malformed_ = true;
  if (state_ != State::Over) end("", malformed_);
}

}  // namespace k2
