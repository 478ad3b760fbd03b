// `k2mlx plan`: which layers each machine should run, from a model folder's safetensors headers or a
// config.json plus a quantization recipe, for given nodes, context length and concurrent sequences.
// Prints per node: layer range, weights, KV cache, workspace, total and headroom. Reads no tensors.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "pipeline/hostfile.h"
#include "pipeline/plan.h"

namespace k2::cli {

namespace {

struct PlanFlags {
  std::string model_dir, config, quant, hostfile, json_out, strategy = "all", kv_dtype = "bfloat16";
  std::vector<std::string> overrides, nodes, usable;
  // Read as numbers and range-checked here, so that "1e20" or 10^12 gets a message about the value (and exit
  // code 2) rather than CLI11's conversion error.
  double context = 40000, sequences = 1, prefill_chunk = 512;
  double usable_fraction = kDefaultUsableFraction;
};

int whole_number(double v, const char* flag, double lo, double hi) {
  if (!(v >= lo && v <= hi) || std::floor(v) != v)
    throw InputError(fmt::format("{} must be a whole number from {:.0f} to {:.0f}, got {}", flag, lo, hi, v));
  return static_cast<int>(v);
}

}  // namespace

Command add_plan(CLI::App& app) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* cmd = app.add_subcommand("plan", "Split a model's layers across machines so that each fits its memory");
  auto* model = cmd->add_option("--model,-m", f->model_dir, "Model folder: sizes come from its safetensors headers");
  auto* config = cmd->add_option("--config", f->config, "config.json (or its folder): sizes computed from its dimensions");
  model->excludes(config);
  cmd->add_option("--quant", f->quant,
                  "With --config: BITS[:GROUP[:MODE]] (e.g. 4:64, 3:64), fp8, or none (bf16); default: what "
                  "config.json declares, else none");
  cmd->add_option("--override", f->overrides,
                  "With --config: per-module quantization MODULE=BITS[:GROUP] or MODULE=none (repeatable; MLX module "
                  "paths, '*' wildcards, e.g. lm_head=6:64, 'model.layers.*.mlp.switch_mlp.down_proj=4:64')");
  cmd->add_option("--node", f->nodes, "A machine NAME:MEMORY[:BANDWIDTH_GBPS] in rank order, e.g. m2:192GB:800 (repeatable)");
  cmd->add_option("--hostfile", f->hostfile, "Machines from a launch hostfile with \"memory\" (and \"bandwidth\", \"usable\")");
  cmd->add_option("--usable", f->usable,
                  "Usable memory of a node NAME=SIZE, e.g. m2=160GB (what you set with iogpu.wired_limit_mb; repeatable)");
  cmd->add_option("--usable-fraction", f->usable_fraction,
                  "Usable share of RAM for nodes without --usable (macOS GPU wired-limit default: about 0.75)")
      ->capture_default_str();
  cmd->add_option("--context", f->context, "Context length in tokens per sequence")->capture_default_str();
  cmd->add_option("--sequences", f->sequences, "Concurrent sequences (each has its own KV cache)")->capture_default_str();
  cmd->add_option("--prefill-chunk", f->prefill_chunk, "Prefill chunk size (sets the workspace)")->capture_default_str();
  cmd->add_option("--kv-dtype", f->kv_dtype, "Activation / KV-cache dtype: bfloat16, float16 or float32")->capture_default_str();
  cmd->add_option("--strategy", f->strategy,
                  "memory (most headroom everywhere: fits the biggest model), time (slowest stage as fast as possible "
                  "by bandwidth, still fitting), or all (both when every node has a bandwidth)")
      ->capture_default_str();
  cmd->add_option("--json-out", f->json_out, "Write the (last) plan as JSON; `k2mlx pipeline --plan` reads it");
  return [f]() {
    if (f->model_dir.empty() && f->config.empty()) throw InputError("plan needs --model DIR or --config config.json");
    if (!f->model_dir.empty() && (!f->quant.empty() || !f->overrides.empty()))
      throw InputError("--quant / --override apply to --config only; a --model folder's tensors give their own sizes");
    if (f->nodes.empty() == f->hostfile.empty()) throw InputError("give the machines with --node (repeatable) or --hostfile");
    const int context = whole_number(f->context, "--context", 1, 1e8);
    const int sequences = whole_number(f->sequences, "--sequences", 1, 1e5);
    const int prefill_chunk = whole_number(f->prefill_chunk, "--prefill-chunk", 1, 1 << 20);

    std::vector<NodeSpec> nodes;
    if (!f->hostfile.empty()) nodes = nodes_from_hosts(read_hostfile(f->hostfile));
    for (const auto& n : f->nodes) nodes.push_back(parse_node(n));
    check_nodes(nodes);  // unique names before --usable looks them up
    for (const auto& u : f->usable) {
      const auto eq = u.find('=');
      if (eq == std::string::npos) throw InputError(fmt::format("--usable '{}' is not NAME=SIZE", u));
      const std::string name = u.substr(0, eq);
      auto it = std::find_if(nodes.begin(), nodes.end(), [&](const NodeSpec& n) { return n.name == name; });
      if (it == nodes.end()) throw InputError(fmt::format("--usable '{}': there is no node named '{}'", u, name));
      it->usable_bytes = parse_size(u.substr(eq + 1));
      if (*it->usable_bytes > it->memory_bytes)
        throw InputError(fmt::format("--usable '{}' is more than node '{}' has ({:.1f} GB of RAM)", u, name, it->memory_bytes / 1e9));
    }
    if (!(f->usable_fraction > 0 && f->usable_fraction <= 1))
      throw InputError(fmt::format("--usable-fraction {} must be in (0, 1]", f->usable_fraction));

    ModelConfig c;
    ModelCosts costs;
    if (!f->model_dir.empty()) {
      c = load_model_config(f->model_dir);
      costs = costs_from_checkpoint(Checkpoint(f->model_dir), c);
    } else {
      const std::filesystem::path p = f->config;
      if (std::filesystem::is_directory(p) || p.filename() == "config.json") {
        c = load_model_config(std::filesystem::is_directory(p) ? p : p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path());
      } else {
        std::ifstream in(p);
        if (!in) throw InputError(fmt::format("--config {} cannot be opened", p.string()));
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
          throw InputError(fmt::format("--config {} is not valid JSON: {}", p.string(), e.what()));
        }
        c = parse_model_config(j, p.string());
      }
      QuantRecipe recipe;
      if (!f->quant.empty()) recipe.global = parse_quant(f->quant);
      else if (auto declared = declared_recipe(c)) recipe = *declared;
      std::vector<std::pair<std::string, std::optional<QuantSpec>>> extra;
      for (const auto& o : f->overrides) extra.push_back(parse_quant_override(o));
      recipe.overrides.insert(recipe.overrides.begin(), extra.begin(), extra.end());  // user overrides win
      costs = costs_from_config(c, recipe);
    }

    PlanRequest r;
    r.context = context;
    r.sequences = sequences;
    r.prefill_chunk = prefill_chunk;
    r.activation_bytes = static_cast<int>(mlx::core::size_of(resolve_dtype(f->kv_dtype)));
    r.usable_fraction = f->usable_fraction;
    std::vector<Strategy> strategies;
    const bool bandwidths = std::all_of(nodes.begin(), nodes.end(), [](const NodeSpec& n) { return n.bandwidth > 0; });
    if (f->strategy == "all") {
      strategies.push_back(Strategy::memory);
      if (bandwidths) strategies.push_back(Strategy::time);
    } else {
      strategies.push_back(parse_strategy(f->strategy));
    }
    fmt::print("model: {} layers, weights {:.1f} GB in total (embedding {:.2f} GB, norm + lm_head {:.2f} GB)\n",
               c.num_hidden_layers, costs.total_weight_bytes() / 1e9, costs.embed_bytes / 1e9, costs.head_bytes / 1e9);
    fmt::print("usable memory: explicit --usable / hostfile \"usable\", else {:.0f}% of RAM (macOS default GPU wired "
               "limit; raise it with sudo sysctl iogpu.wired_limit_mb=N)\n\n", f->usable_fraction * 100);
    Plan plan;
    for (Strategy s : strategies) {
      r.strategy = s;
      plan = make_plan(c, costs, nodes, r);
      fmt::print("{}\n", format_plan(plan));
      if (!plan.feasible) break;  // no split fits, whatever the objective
    }
    if (!f->json_out.empty()) {
      std::ofstream out(f->json_out);
      if (!out) throw InputError(fmt::format("{}: cannot open for writing", f->json_out));
      out << plan_to_json(plan).dump(2) << "\n";
    }
    if (!plan.feasible) throw InputError("the model does not fit: " + plan.problem);
    return 0;
  };
}

}  // namespace k2::cli
