// Stage planning: which contiguous layer range each node (in rank order) runs, chosen to fit every
// node's usable memory (weights + KV cache + workspace) and, when asked, to balance per-token time by
// each node's memory bandwidth. Pure arithmetic over ModelCosts; no I/O beyond the JSON round trip.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/config.h"
#include "pipeline/layer_costs.h"

namespace k2 {

// macOS lets the GPU wire about 75 % of RAM by default on large-memory Macs (the
// recommendedMaxWorkingSetSize rule; raise it with `sudo sysctl iogpu.wired_limit_mb=N`).
inline constexpr double kDefaultUsableFraction = 0.75;

struct NodeSpec {
  std::string name;
  double memory_bytes = 0;           // physical RAM
  double bandwidth = 0;              // bytes per second; 0 = unknown
  std::optional<double> usable_bytes;  // explicit limit (e.g. the wired limit you set); else fraction · RAM
  double usable(double fraction) const { return usable_bytes ? *usable_bytes : memory_bytes * fraction; }
};

// "192", "192GB", "192G", "180GiB", "0.5TB", "160000MB" -> bytes (GB = 1e9, GiB = 2^30). Bare numbers are GB.
double parse_size(const std::string& text);
// "800" / "800GB/s" -> bytes per second (bare numbers are GB/s).
double parse_bandwidth(const std::string& text);
// "NAME:MEM[:BANDWIDTH]" -> NodeSpec; throws InputError naming the bad part.
NodeSpec parse_node(const std::string& text);

// Names are unique (plans and --usable refer to nodes by name) and no usable limit exceeds the node's
// RAM; throws InputError naming the node. make_plan calls it.
void check_nodes(const std::vector<NodeSpec>& nodes);

enum class Strategy { memory, time };
Strategy parse_strategy(const std::string& text);
const char* to_string(Strategy s);

struct PlanRequest {
  int context = 40000;         // tokens of context per sequence
  int sequences = 1;           // concurrent sequences (each has its own KV cache)
  int prefill_chunk = 512;
  int activation_bytes = 2;    // bf16 activations and KV cache
  double usable_fraction = kDefaultUsableFraction;
  Strategy strategy = Strategy::memory;
};

struct StagePlan {
  std::string node;
  int first = 0, last = 0;  // layers [first, last)
  bool embed = false, head = false;
  double weights = 0, kv_cache = 0, workspace = 0, usable = 0;
  double read_bytes = 0;   // per decoded token
  double seconds = 0;      // per decoded token at the node's bandwidth (0 when unknown)
  double total() const { return weights + kv_cache + workspace; }
  double headroom() const { return usable - total(); }
};

struct Plan {
  Strategy strategy = Strategy::memory;
  bool feasible = false;
  std::string problem;  // why it does not fit: how much is missing where
  std::vector<StagePlan> stages;
  std::string source;
  int context = 0, sequences = 0;
  double slowest_stage_seconds() const;
  double token_seconds() const;  // sum over stages: one sequence's decode step (network not counted)
};

// Places num_hidden_layers layers on `nodes` in order, one non-empty range each. Memory: minimises the
// largest fill ratio (total / usable). Time: minimises the slowest stage's time among the splits that
// fit (needs every node's bandwidth), then the fill ratio. Never throws for "does not fit": the plan
// comes back with feasible = false, the best split found and a problem message.
Plan make_plan(const ModelConfig& config, const ModelCosts& costs, const std::vector<NodeSpec>& nodes,
               const PlanRequest& request);

// Costs of one stage for an explicit range (used by make_plan and for user-given splits).
StagePlan stage_cost(const ModelConfig& config, const ModelCosts& costs, const NodeSpec& node, int first, int last,
                     const PlanRequest& request);

// Human-readable table, GB = 1e9 bytes.
std::string format_plan(const Plan& plan);
nlohmann::json plan_to_json(const Plan& plan);
// The layer ranges of a plan written by plan_to_json (or any {"stages": [{"first", "last"}]}).
std::vector<std::pair<int, int>> ranges_from_plan_json(const nlohmann::json& j, const std::string& source);

// "0:2,2:4" -> {{0,2},{2,4}}; checks the ranges are contiguous, non-empty and cover [0, n).
std::vector<std::pair<int, int>> parse_stage_ranges(const std::string& text, int num_layers);
void check_stage_ranges(const std::vector<std::pair<int, int>>& ranges, int num_layers, const std::string& source);

}  // namespace k2
