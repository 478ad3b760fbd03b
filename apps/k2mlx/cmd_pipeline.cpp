// `k2mlx pipeline`: one rank of a layer-pipelined job (started by `k2mlx launch`, mpirun, or by hand
// with MLX_RANK / MLX_HOSTFILE). Joins the group, loads only its layer range, then generates (from ids or
// text) or computes logits with the other ranks, and writes its outputs. Rank setup is in rank_setup.h.
#include <fstream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "io/npy.h"
#include "mlx/mlx.h"
#include "model/footprint.h"
#include "pipeline/launcher.h"
#include "pipeline/stage_runner.h"
#include "prefill_flags.h"
#include "sampling_flags.h"
#include "prompt_input.h"
#include "rank_setup.h"
#include "text_io.h"

namespace k2::cli {
namespace mx = mlx::core;

namespace {

struct PipelineFlags {
  ModelFlags model;
  StageFlags stage;
  PromptFlags prompt;
  std::string ids_out, logits_out, stats_out;
  bool all_positions = false, no_overlap = false, ignore_eos = false;
  int max_tokens = 32;
  PrefillFlags prefill;
  SamplingParams sampling;
};

}  // namespace

int run_rank(PipelineFlags& f);

Command add_pipeline(CLI::App& app) {
  auto f = std::make_shared<PipelineFlags>();
  CLI::App* cmd = app.add_subcommand(
      "pipeline", "Run one rank of a layer-split job (start all ranks with `k2mlx launch`, mpirun or MLX_RANK/MLX_HOSTFILE)");
  f->model.add_to(*cmd);
  f->prompt.add_to(*cmd, " (read by every rank; rank 0 prints the output)");
  cmd->add_option("--max-tokens,-n", f->max_tokens, "Maximum number of tokens to generate")
      ->check(non_negative())
      ->capture_default_str();
  add_sampling_flags(*cmd, f->sampling);
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Do not stop at the model's end-of-sequence tokens");
  cmd->add_option("--ids-out", f->ids_out,
                  "Write the generated ids as JSON; '{rank}' in the path is replaced (without it only rank 0 writes)");
  cmd->add_option("--logits-out", f->logits_out,
                  "Compute logits instead of generating; the last rank writes them as float32 .npy");
  cmd->add_flag("--all-positions", f->all_positions, "With --logits-out: every position, not just the last");
  f->stage.add_to(*cmd);
  f->prefill.add_to(*cmd);  // chunks flow through the stages back to back
  cmd->add_flag("--no-overlap", f->no_overlap, "Wait for the last stage after each prefill chunk (baseline for the bench)");
  cmd->add_option("--stats-out", f->stats_out, "Write this rank's statistics as JSON ('{rank}' is replaced)");
  return [f]() {
    try {
      return run_rank(*f);
    } catch (const PeerLost& e) {
      fmt::print(stderr, "{}\n", e.what());
      return kExitPeerLost;
    }
  };
}

int run_rank(PipelineFlags& flags) {
  auto* f = &flags;
  {
    f->prompt.check("pipeline");
    std::optional<TextModel> text;
    if (f->prompt.has_text()) text = TextModel::load(f->model.model_dir);
    const std::vector<int> ids = f->prompt.token_ids(text);
    f->sampling.validate();
    install_crash_handler();
    mx::distributed::Group group = join_group(f->stage);
    const int rank = group.rank(), size = group.size();

    const ModelConfig config = load_model_config(f->model.model_dir);
    const auto ranges = stage_ranges(f->stage, f->model.model_dir, config, size);
    LoadOptions o = f->model.load_options();
    o.first_layer = ranges[rank].first;
    o.last_layer = ranges[rank].second;
    o.load_embedding = rank == 0;
    o.load_head = rank == size - 1;
    const size_t active_before = mx::get_active_memory();
    Model stage = load_model(f->model, o);
    mx::clear_cache();
    const size_t loaded_active = mx::get_active_memory() - active_before;

    PipelineOptions po;
    po.prefill = f->prefill.chunking();
    po.overlap = !f->no_overlap;
    StageRunner runner(stage, group, po);
    set_crash_link(&runner.link());
    // MLX reports a vanished neighbour as a plain runtime_error from eval; name the rank instead.
    auto guarded = [&](auto&& body) { return cli::guarded(runner.link(), body); };
    guarded([&] { runner.handshake(); return 0; });
    if (!f->model.quiet)
      fmt::print(stderr, "[rank {}/{}] layers [{}, {}){}{} ready\n", rank, size, o.first_layer, o.last_layer,
                 o.load_embedding ? " +embedding" : "", o.load_head ? " +lm_head" : "");

    PipelineResult result;
    if (!f->logits_out.empty()) {
      result = guarded([&] { return runner.logits(ids, f->all_positions); });
      if (result.logits) save_npy_float32(f->logits_out, *result.logits);
    } else {
      GenerateOptions go;
      go.max_tokens = f->max_tokens;
      if (!f->ignore_eos) go.stop_tokens = text ? text->stop_tokens(config.eos_token_ids) : config.eos_token_ids;
      TokenOutput output(text && rank == 0 ? text->tokenizer.get() : nullptr);
      result = guarded([&] {
        return runner.generate(ids, f->sampling, go, [&](int id) {
          output(id);
          return true;
        });
      });
      output.finish();
      if (rank == 0) fmt::print("\n");
      const bool placeholder = f->ids_out.find("{rank}") != std::string::npos;
      if (!f->ids_out.empty() && (placeholder || rank == 0)) {
        std::ofstream out(for_rank(f->ids_out, rank));
        if (!out) throw InputError(fmt::format("{}: cannot open for writing", for_rank(f->ids_out, rank)));
        out << fmt::format("[{}]\n", fmt::join(result.tokens, ", "));
      }
      if (!f->model.quiet && rank == 0 && result.decode_seconds > 0 && result.tokens.size() > 1)
        fmt::print(stderr, "prompt: {} tokens in {:.3f} s | generation: {} tokens, {:.2f} tok/s | finish: {}\n",
                   result.prompt_tokens, result.prefill_seconds, result.tokens.size(),
                   (result.tokens.size() - 1) / result.decode_seconds, result.finish_reason);
    }
    if (!f->stats_out.empty()) {
      const Footprint fp = measure_checkpoint(Checkpoint(f->model.model_dir), config);
      nlohmann::json s = {{"rank", rank},
                          {"size", size},
                          {"first_layer", o.first_layer},
                          {"last_layer", o.last_layer},
                          {"has_embedding", stage.has_embedding()},
                          {"has_head", stage.has_head()},
                          {"weight_bytes", stage.weights().nbytes()},
                          {"checkpoint_range_bytes", fp.range_bytes(o.first_layer, o.last_layer, o.load_embedding, o.load_head)},
                          {"checkpoint_total_bytes", fp.total()},
                          {"active_memory_after_load", loaded_active},
                          {"peak_memory", mx::get_peak_memory()},
                          {"tokens", result.tokens},
                          {"sampled", result.sampled},
                          {"finish_reason", result.finish_reason},
                          {"prompt_tokens", result.prompt_tokens},
                          {"prefill_seconds", result.prefill_seconds},
                          {"decode_seconds", result.decode_seconds}};
      std::ofstream out(for_rank(f->stats_out, rank));
      if (!out) throw InputError(fmt::format("{}: cannot open for writing", for_rank(f->stats_out, rank)));
      out << s.dump(2) << "\n";
    }
    // Leave together: a rank that exits while a neighbour still reads would look like a lost peer.
    if (size > 1) guarded([&] { mx::eval(mx::distributed::all_sum(mx::array(1.0f), group)); return 0; });
    set_crash_link(nullptr);
    return 0;
  }
}

}  // namespace k2::cli
