// Stage planning by dynamic programming over contiguous layer splits (nodes in rank order), plus the
// size / node / range parsers and the plan's text and JSON forms.
#include "pipeline/plan.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/footprint.h"

namespace k2 {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double parse_number(const std::string& text, const std::string& what) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v) && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw InputError(fmt::format("{} '{}' is not a positive number", what, text));
}

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string gb(double bytes) { return fmt::format("{:.1f} GB", bytes / 1e9); }

// Minimises max over stages of cost(node, first, last) over contiguous splits; returns the split
// (empty when every split has an infinite cost).
template <typename Cost>
std::vector<std::pair<int, int>> best_split(int layers, int nodes, Cost cost) {
  std::vector<std::vector<double>> dp(nodes + 1, std::vector<double>(layers + 1, kInf));
  std::vector<std::vector<int>> from(nodes + 1, std::vector<int>(layers + 1, -1));
  dp[0][0] = 0;
  for (int i = 1; i <= nodes; ++i)
    for (int j = i; j <= layers - (nodes - i); ++j)
      for (int k = i - 1; k < j; ++k) {
        if (dp[i - 1][k] == kInf) continue;
        const double v = std::max(dp[i - 1][k], cost(i - 1, k, j));
        if (v < dp[i][j]) dp[i][j] = v, from[i][j] = k;
      }
  if (dp[nodes][layers] == kInf) return {};
  std::vector<std::pair<int, int>> split(nodes);
  for (int i = nodes, j = layers; i > 0; --i) {
    split[i - 1] = {from[i][j], j};
    j = from[i][j];
  }
  return split;
}

}  // namespace

double parse_size(const std::string& text) {
  const std::string t = lower(text);
  if (!t.empty() && t[0] == '-') throw InputError(fmt::format("size '{}' is negative; give a positive size such as 192GB", text));
  if (t.empty() || !(std::isdigit(static_cast<unsigned char>(t[0])) || t[0] == '.'))
    throw InputError(fmt::format("size '{}' does not start with a number (e.g. 192GB, 180GiB, 0.5TB)", text));
  size_t end = 0;
  while (end < t.size() && (std::isdigit(static_cast<unsigned char>(t[end])) || t[end] == '.')) ++end;
  const std::string unit = t.substr(end);
  double scale = 0;
  if (unit.empty() || unit == "g" || unit == "gb") scale = 1e9;
  else if (unit == "gib") scale = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb") scale = 1e12;
  else if (unit == "tib") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "m" || unit == "mb") scale = 1e6;
  else if (unit == "mib") scale = 1024.0 * 1024;
  else throw InputError(fmt::format("size '{}': unknown unit '{}' (use GB, GiB, TB, MB)", text, text.substr(end)));
  return parse_number(t.substr(0, end), "size") * scale;
}

double parse_bandwidth(const std::string& text) {
  std::string t = lower(text);
  for (const char* suffix : {"gb/s", "g/s", "gbps"})
    if (t.size() > std::strlen(suffix) && t.ends_with(suffix)) t = t.substr(0, t.size() - std::strlen(suffix));
  return parse_number(t, "bandwidth (GB/s)") * 1e9;
}

NodeSpec parse_node(const std::string& text) {
  std::vector<std::string> parts;
  size_t pos = 0;
  while (true) {
    const auto c = text.find(':', pos);
    parts.push_back(text.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty())
    throw InputError(fmt::format("--node '{}' is not NAME:MEMORY[:BANDWIDTH], e.g. m2:192GB:800", text));
  NodeSpec n;
  n.name = parts[0];
  n.memory_bytes = parse_size(parts[1]);
  if (parts.size() == 3) n.bandwidth = parse_bandwidth(parts[2]);
  return n;
}

void check_nodes(const std::vector<NodeSpec>& nodes) {
  for (size_t i = 0; i < nodes.size(); ++i) {
    const NodeSpec& n = nodes[i];
    for (size_t j = 0; j < i; ++j)
      if (nodes[j].name == n.name)
        throw InputError(fmt::format("nodes {} and {} are both named '{}'; give each machine its own name", j, i, n.name));
    if (n.usable_bytes && *n.usable_bytes > n.memory_bytes)
      throw InputError(fmt::format("node '{}': usable memory {} is more than its {} of RAM", n.name, gb(*n.usable_bytes),
                                   gb(n.memory_bytes)));
  }
}

Strategy parse_strategy(const std::string& text) {
  if (text == "memory") return Strategy::memory;
  if (text == "time") return Strategy::time;
  throw InputError(fmt::format("strategy '{}' is not 'memory' or 'time'", text));
}

const char* to_string(Strategy s) { return s == Strategy::memory ? "memory" : "time"; }

double Plan::slowest_stage_seconds() const {
  double m = 0;
  for (const auto& s : stages) m = std::max(m, s.seconds);
  return m;
}

double Plan::token_seconds() const {
  double t = 0;
  for (const auto& s : stages) t += s.seconds;
  return t;
}

StagePlan stage_cost(const ModelConfig& c, const ModelCosts& costs, const NodeSpec& node, int first, int last,
                     const PlanRequest& r) {
  StagePlan s;
  s.node = node.name;
  s.first = first;
  s.last = last;
  s.embed = first == 0;
  s.head = last == c.num_hidden_layers;
  s.weights = costs.range_bytes(first, last, s.embed, s.head);
  // The plan is for GPU nodes (Metal): MLX's SDPA path, not the CPU's blocked attention.
  const ActivationSpec act{static_cast<size_t>(r.activation_bytes), /*blocked_attention=*/false};
  const RuntimeMemory rt = estimate_runtime_memory(c, last - first, r.context, r.prefill_chunk, act, s.head);
  s.kv_cache = static_cast<double>(rt.kv_cache) * r.sequences;
  s.workspace = static_cast<double>(rt.workspace + rt.kv_growth);
  s.usable = node.usable(r.usable_fraction);
  s.read_bytes = costs.range_read_bytes(first, last, s.embed, s.head);
  s.seconds = node.bandwidth > 0 ? s.read_bytes / node.bandwidth : 0.0;
  return s;
}

Plan make_plan(const ModelConfig& c, const ModelCosts& costs, const std::vector<NodeSpec>& nodes,
               const PlanRequest& r) {
  const int L = c.num_hidden_layers, N = static_cast<int>(nodes.size());
  if (N == 0) throw InputError("no nodes given (use --node NAME:MEMORY[:BANDWIDTH] or --hostfile)");
  if (N > L) throw InputError(fmt::format("{} nodes but the model has only {} layers (each node runs at least one)", N, L));
  if (r.context < 1 || r.sequences < 1 || r.prefill_chunk < 1)
    throw InputError(fmt::format("context ({}), sequences ({}) and prefill chunk ({}) must be at least 1", r.context,
                                 r.sequences, r.prefill_chunk));
  check_nodes(nodes);
  for (const auto& n : nodes)
    if (n.usable(r.usable_fraction) <= 0) throw InputError(fmt::format("node {} has no usable memory", n.name));
  if (r.strategy == Strategy::time)
    for (const auto& n : nodes)
      if (n.bandwidth <= 0)
        throw InputError(fmt::format("the time strategy needs every node's memory bandwidth; node {} has none "
                                     "(give it as NAME:MEMORY:GBPS, e.g. {}:192GB:800)", n.name, n.name));

  auto cost = [&](int i, int a, int b) { return stage_cost(c, costs, nodes[i], a, b, r); };
  auto fill = [&](int i, int a, int b) { const StagePlan s = cost(i, a, b); return s.total() / s.usable; };
  Plan plan;
  plan.strategy = r.strategy;
  plan.source = costs.source;
  plan.context = r.context;
  plan.sequences = r.sequences;
  std::vector<std::pair<int, int>> split = best_split(L, N, fill);
  double best_fill = 0;
  for (int i = 0; i < N; ++i) best_fill = std::max(best_fill, fill(i, split[i].first, split[i].second));
  plan.feasible = best_fill <= 1.0;
  if (plan.feasible && r.strategy == Strategy::time) {
    auto time = [&](int i, int a, int b) { const StagePlan s = cost(i, a, b); return s.total() <= s.usable ? s.seconds : kInf; };
    const auto fastest = best_split(L, N, time);
    double slowest = 0;
    for (int i = 0; i < N; ++i) slowest = std::max(slowest, time(i, fastest[i].first, fastest[i].second));
    // Among the splits that reach that slowest-stage time, keep the most memory headroom.
    auto capped = [&](int i, int a, int b) { return time(i, a, b) <= slowest * (1 + 1e-9) ? fill(i, a, b) : kInf; };
    split = best_split(L, N, capped);
  }
  for (int i = 0; i < N; ++i) plan.stages.push_back(cost(i, split[i].first, split[i].second));
  if (!plan.feasible) {
    double need = 0, have = 0;
    for (const auto& s : plan.stages) need += s.total(), have += s.usable;
    std::string where;
    for (const auto& s : plan.stages)
      if (s.total() > s.usable)
        where += fmt::format("; node {} (layers [{}, {})) needs {} but has {} usable: {} missing", s.node, s.first,
                             s.last, gb(s.total()), gb(s.usable), gb(s.total() - s.usable));
    plan.problem = fmt::format("the best split needs {} in total and the nodes offer {} usable "
                               "({} missing overall){}. Raise the usable memory (macOS: sudo sysctl "
                               "iogpu.wired_limit_mb=...; then --usable NAME=SIZE), add a node, use fewer bits, or "
                               "reduce --context / --sequences",
                               gb(need), gb(have), gb(std::max(0.0, need - have)), where);
  }
  return plan;
}

std::string format_plan(const Plan& p) {
  std::string out = fmt::format("plan ({} strategy) for {} at {} tokens of context x {} sequence(s):\n",
                                to_string(p.strategy), p.source, p.context, p.sequences);
  out += fmt::format("{:<10} {:>11} {:>7} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}\n", "node", "layers", "count",
                     "weights", "KV cache", "workspace", "total", "usable", "headroom", "ms/token");
  for (const auto& s : p.stages) {
    std::string extra = std::string(s.embed ? "+embed" : "") + (s.head ? "+head" : "");
    out += fmt::format("{:<10} {:>11} {:>7} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}{}\n", s.node,
                       fmt::format("[{},{})", s.first, s.last), s.last - s.first, gb(s.weights), gb(s.kv_cache),
                       gb(s.workspace), gb(s.total()), gb(s.usable), gb(s.headroom()),
                       s.seconds > 0 ? fmt::format("{:.1f}", s.seconds * 1e3) : "-", extra.empty() ? "" : "  " + extra);
  }
  if (p.token_seconds() > 0)
    out += fmt::format("decode estimate (bandwidth bound, network not counted): {:.1f} ms/token for one sequence "
                       "(~{:.1f} tok/s); slowest stage {:.1f} ms\n",
                       p.token_seconds() * 1e3, 1.0 / p.token_seconds(), p.slowest_stage_seconds() * 1e3);
  out += p.feasible ? "fits: every node stays within its usable memory\n" : "DOES NOT FIT: " + p.problem + "\n";
  return out;
}

nlohmann::json plan_to_json(const Plan& p) {
  nlohmann::json j;
  j["strategy"] = to_string(p.strategy);
  j["feasible"] = p.feasible;
  j["problem"] = p.problem;
  j["source"] = p.source;
  j["context"] = p.context;
  j["sequences"] = p.sequences;
  j["stages"] = nlohmann::json::array();
  for (const auto& s : p.stages)
    j["stages"].push_back({{"node", s.node}, {"first", s.first}, {"last", s.last}, {"embed", s.embed},
                           {"head", s.head}, {"weights", s.weights}, {"kv_cache", s.kv_cache},
                           {"workspace", s.workspace}, {"total", s.total()}, {"usable", s.usable},
                           {"headroom", s.headroom()}, {"read_bytes", s.read_bytes}, {"seconds", s.seconds}});
  return j;
}

std::vector<std::pair<int, int>> ranges_from_plan_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("stages") || !j["stages"].is_array())
    throw InputError(fmt::format("{}: expected an object with a \"stages\" list", source));
  std::vector<std::pair<int, int>> r;
  for (const auto& s : j["stages"]) {
    if (!s.is_object() || !s.contains("first") || !s.contains("last") || !s["first"].is_number_integer() ||
        !s["last"].is_number_integer())
      throw InputError(fmt::format("{}: every stage needs integer \"first\" and \"last\"", source));
    r.emplace_back(s["first"].get<int>(), s["last"].get<int>());
  }
  return r;
}

std::vector<std::pair<int, int>> parse_stage_ranges(const std::string& text, int n) {
  std::vector<std::pair<int, int>> r;
  size_t pos = 0;
  while (pos <= text.size()) {
    auto end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    const auto colon = item.find(':');
    auto num = [&](const std::string& s) {
      try {
        size_t used = 0;
        const int v = std::stoi(s, &used);
        if (used == s.size()) return v;
      } catch (const std::exception&) {
      }
      throw InputError(fmt::format("--stages '{}': '{}' is not FIRST:LAST", text, item));
    };
    if (colon == std::string::npos) throw InputError(fmt::format("--stages '{}': '{}' is not FIRST:LAST", text, item));
    r.emplace_back(num(item.substr(0, colon)), num(item.substr(colon + 1)));
    pos = end + 1;
  }
  check_stage_ranges(r, n, "--stages '" + text + "'");
  return r;
}

void check_stage_ranges(const std::vector<std::pair<int, int>>& r, int n, const std::string& source) {
  if (r.empty()) throw InputError(fmt::format("{}: no stages", source));
  int expect = 0;
  for (const auto& [a, b] : r) {
    if (a != expect || b <= a)
      throw InputError(fmt::format("{}: stage [{}, {}) should start at layer {} and hold at least one layer "
                                   "(stages must be contiguous and cover [0, {}))", source, a, b, expect, n));
    expect = b;
  }
  if (expect != n) throw InputError(fmt::format("{}: stages end at layer {} but the model has {} layers", source, expect, n));
}

}  // namespace k2
