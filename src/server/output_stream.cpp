// Two stages, each with its own hold-back: the stop filter on the raw text, then the router that
// splits reasoning / content / tool sections at the markers of the Kimi and DeepSeek chat formats.
#include "server/output_stream.h"

#include <algorithm>

namespace k2 {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";

size_t find_first(std::string_view text, const std::vector<std::string>& needles, size_t* len) {
  size_t best = std::string_view::npos;
  for (const auto& n : needles) {
    const size_t f = text.find(n);
    if (f < best) {
      best = f;
      *len = n.size();
    }
  }
  return best;
}

}  // namespace

void OutputDelta::append(OutputDelta d) {
  reasoning += d.reasoning;
  content += d.content;
  for (auto& c : d.tool_calls) {
    if (!tool_calls.empty() && tool_calls.back().index == c.index && c.id.empty() && c.name.empty())
      tool_calls.back().arguments += c.arguments;
    else
      tool_calls.push_back(std::move(c));
  }
}

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
  mode_ = !options_.parse_reasoning ? Mode::Content : options_.thinking_open ? Mode::Reasoning : Mode::Start;
  if (!options_.forced_tool_prefix.empty()) {
    // The prompt ends with the prefix: feed it through the section parser so that a named call's id
    // and name come out with the first delta.
    const std::string& prefix = options_.forced_tool_prefix;
    size_t len = 0;
    const size_t b = find_first(prefix, tool_markers(options_.tool_format).section_begin, &len);
    mode_ = Mode::Tools;
    open_tools(std::string_view(prefix).substr(0, b == std::string::npos ? 0 : b + len));
    tools_->push(std::string_view(prefix).substr(b == std::string::npos ? 0 : b + len), forced_deltas_);
  }
}

void OutputAssembler::open_tools(std::string_view opener) {
  calls_before_section_ += tools_ ? tools_->calls() : 0;
  tools_.emplace(options_.tool_format, options_.first_call_number + calls_before_section_, options_.parallel_tool_calls);
  section_ = std::string(opener);
}

OutputDelta OutputAssembler::push(std::string_view text) {
  OutputDelta out;
  if (!forced_deltas_.empty()) out.tool_calls = std::move(forced_deltas_), forced_deltas_.clear();
  if (stopped_ || finished_) return out;
  stop_pending_.append(text);
  std::string_view s = stop_pending_;
  // Earliest stop match wins; everything before it is released, the rest is dropped.
  size_t cut = std::string_view::npos;
  for (const auto& stop : options_.stop) {
    const size_t f = s.find(stop);
    if (f < cut) {
      cut = f;
      matched_stop_ = stop;
    }
  }
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
  if (!forced_deltas_.empty()) out.tool_calls = std::move(forced_deltas_), forced_deltas_.clear();
  if (finished_) return out;
  finished_ = true;
  route(stopped_ ? std::string_view{} : std::string_view(stop_pending_), out, true);
  stop_pending_.clear();
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
        if (final) pending_.clear();
        return;
      }
      case Mode::Content: {
        const auto& begins = tool_markers(options_.tool_format).section_begin;
        if (options_.parse_tools) {
          size_t len = 0;
          const size_t b = find_first(p, begins, &len);
          if (b != std::string_view::npos) {
            out.content.append(p.substr(0, b));
            open_tools(p.substr(b, len));
            pending_.erase(0, b + len);
            mode_ = Mode::Tools;
            break;
          }
        }
        std::vector<std::string_view> needles(begins.begin(), begins.end());
        const size_t hold = final || !options_.parse_tools ? 0 : partial_suffix(p, needles);
        out.content.append(p.substr(0, p.size() - hold));
        pending_.erase(0, p.size() - hold);
        if (final) pending_.clear();
        return;
      }
      case Mode::Tools: {
        std::vector<ToolCallDelta> deltas;
        section_.append(p);
        const bool over = tools_->push(p, deltas);
        pending_.clear();
        if (!over && final) tools_->finish(deltas);
        for (auto& d : deltas) {
          d.index += calls_before_section_;
          out.tool_calls.push_back(std::move(d));
        }
        if (!over && !final) return;
        if (tools_->calls() == 0) {
          // No call in it: the section was not one; show it as it was written (past a forced opener).
          const size_t skip = options_.forced_tool_prefix.empty() || calls_before_section_ > 0
                                  ? 0 : std::min(section_.size(), options_.forced_tool_prefix.size());
          out.content.append(std::string_view(section_).substr(skip));
          section_.clear();
          mode_ = Mode::Content;
          if (final) return;
          // Whatever followed was already part of section_; only new text goes on.
          tools_->take_rest();
          break;
        }
        section_.clear();
        mode_ = Mode::Content;
        if (!options_.parallel_tool_calls && tools_->over() && !tools_->malformed()) {
          stopped_ = true;  // the one allowed call is complete
          return;
        }
        pending_ = tools_->take_rest();
        if (final) {
          out.content.append(pending_);
          pending_.clear();
          return;
        }
        break;
      }
    }
  }
}

}  // namespace k2
