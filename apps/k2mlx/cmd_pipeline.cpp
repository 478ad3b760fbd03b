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
#include "launcher.h"
#include "mlx/mlx.h"
#include "model/footprint.h"
#include "engine/local_step.h"
#include "engine/scheduler.h"
#include "pipeline/pipeline_step.h"
#include "batch_jobs.h"
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
  std::string batch, batch_out = "-";
  int parallel = 4;
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
  cmd->add_option("--batch", f->batch,
                  "Generate for every line of this JSON-lines file together, as `generate --batch` (rank 0 writes the "
                  "results)");
  cmd->add_option("--batch-out", f->batch_out, "With --batch: where rank 0 writes the results (- = stdout)")
      ->capture_default_str();
  cmd->add_option("--parallel", f->parallel, "With --batch: sequences in flight together")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
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
    const bool batch = !f->batch.empty();
    if (batch && (f->prompt.has_ids() || f->prompt.has_text())) throw InputError("--batch replaces --ids / --prompt; give one");
    if (!batch) f->prompt.check("pipeline");
    std::optional<TextModel> text;
    if (f->prompt.has_text()) text = TextModel::load(f->model.model_dir);
    const std::vector<int> ids = batch ? std::vector<int>{} : f->prompt.token_ids(text);
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

    PipelineStepOptions po;
    po.prefill = f->prefill.chunking();
    po.overlap = !f->no_overlap;
    po.slots = batch ? f->parallel : 1;
    StageLink link(stage, group);
    set_crash_link(&link);
    // MLX reports a vanished neighbour as a plain runtime_error from eval; name the rank instead.
    auto guarded = [&](auto&& body) { return cli::guarded(link, body); };
    guarded([&] { link.handshake(); return 0; });
    if (!f->model.quiet)
      fmt::print(stderr, "[rank {}/{}] layers [{}, {}){}{} ready\n", rank, size, o.first_layer, o.last_layer,
                 o.load_embedding ? " +embedding" : "", o.load_head ? " +lm_head" : "");

    if (!batch) link.check_ids(ids);  // on every rank, so that a bad prompt stops them all with the same message
    // Rank 0 drives the engine's loop (one sequence) through the stages; the other ranks follow it.
    JobResult result;
    std::vector<int> tokens;  // the emitted ids, identical on every rank
    if (batch) {
      if (rank == 0) {
        BatchItem defaults;
        defaults.job.sampling = f->sampling;
        defaults.job.max_tokens = f->max_tokens;
        if (!f->ignore_eos) defaults.job.stop_tokens = stop_tokens(config, nullptr);
        std::vector<BatchItem> items = read_batch(f->batch, defaults, nullptr);
        std::unique_ptr<ModelStep> step;
        if (size == 1) step = std::make_unique<LocalStep>(stage, po.prefill, PromptCacheOptions{0, 0});
        else step = std::make_unique<PipelineStep>(link, po);
        const std::vector<JobResult> results = guarded([&] { return run_batch(*step, f->parallel, std::move(items)); });
        step->finish();
        write_batch(f->batch_out == "-" ? "/dev/stdout" : f->batch_out, results);
      } else {
        guarded([&] { return follow(link); });
      }
    } else if (!f->logits_out.empty()) {
      std::optional<mx::array> logits;
      if (size == 1) {
        Session session(stage);
        logits = mx::astype(session.prefill(ids, po.prefill, f->all_positions), mx::float32);
      } else if (rank == 0) {
        guarded([&] { pipeline_logits(link, ids, f->all_positions, po); return 0; });
      } else {
        logits = guarded([&] { return follow(link); }).logits;
      }
      if (logits) save_npy_float32(f->logits_out, *logits);
      result.prompt_tokens = static_cast<int>(ids.size());
    } else {
      TokenOutput output(text && rank == 0 ? text->tokenizer.get() : nullptr);
      if (rank == 0) {
        GenerationJob job;
        job.prompt = ids;
        job.sampling = f->sampling;
        job.max_tokens = f->max_tokens;
        if (!f->ignore_eos) job.stop_tokens = stop_tokens(config, text ? &*text : nullptr);
        job.on_token = [&](int id) {
          output(id);
          return true;
        };
        std::unique_ptr<ModelStep> step;
        if (size == 1) step = std::make_unique<LocalStep>(stage, po.prefill, PromptCacheOptions{0, 0});
        else step = std::make_unique<PipelineStep>(link, po);
        result = guarded([&] { return run_one(*step, std::move(job)); });
        step->finish();
        tokens = result.tokens;
      } else {
        const FollowStats fs = guarded([&] { return follow(link); });
        tokens = fs.last_tokens;
      }
      output.finish();
      if (rank == 0) fmt::print("\n");
      const bool placeholder = f->ids_out.find("{rank}") != std::string::npos;
      if (!f->ids_out.empty() && (placeholder || rank == 0)) {
        std::ofstream out(for_rank(f->ids_out, rank));
        if (!out) throw InputError(fmt::format("{}: cannot open for writing", for_rank(f->ids_out, rank)));
        out << fmt::format("[{}]\n", fmt::join(tokens, ", "));
      }
      if (!f->model.quiet && rank == 0 && result.decode_seconds > 0 && result.tokens.size() > 1)
        fmt::print(stderr, "prompt: {} tokens in {:.3f} s | generation: {} tokens, {:.2f} tok/s | finish: {}\n",
                   result.prompt_tokens, result.first_token_seconds, result.tokens.size(), result.decode_tps(),
                   result.finish_reason);
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
                          {"tokens", tokens},
                          {"finish_reason", result.finish_reason},
                          {"prompt_tokens", result.prompt_tokens},
                          {"prefill_seconds", result.first_token_seconds},
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

}  // namespace k2::cli
