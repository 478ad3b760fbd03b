// `k2mlx generate`: streams generated tokens for a prompt (ids or text, from flags, files or stdin), then
// prints prefill and decode speed and peak memory; --print-prompt shows the rendered prompt instead.
#include <chrono>
#include <fstream>
#include <limits>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/local_step.h"
#include "engine/scheduler.h"
#include "batch_jobs.h"
#include "engine/sampler.h"
#include "mlx/mlx.h"
#include "prefill_flags.h"
#include "sampling_flags.h"
#include "prompt_input.h"
#include "text_io.h"

namespace k2::cli {
namespace mx = mlx::core;

namespace {

struct GenerateFlags {
  ModelFlags model;
  PromptFlags prompt;
  bool print_prompt = false;
  int max_tokens = 128;
  PrefillFlags prefill;
  SamplingParams sampling;
  std::string ids_out;
  std::string stats_json;
  bool ignore_eos = false;
  std::string batch, batch_out = "-";
  int parallel = 4;
  int step_tokens = 0;
  double prompt_cache_mib = 0;
};

// --batch: every line of the file through the engine together; results as JSON lines.
int generate_batch(GenerateFlags& f) {
  f.sampling.validate();
  std::optional<TextModel> text;
  try {
    text = TextModel::load(f.model.model_dir);  // for "prompt" lines; a folder without a tokenizer takes "ids" only
  } catch (const InputError&) {
  }
  Model model = load_model(f.model, f.model.load_options());
  BatchItem defaults;
  defaults.job.sampling = f.sampling;
  defaults.job.max_tokens = f.max_tokens;
  if (!f.ignore_eos) defaults.job.stop_tokens = stop_tokens(model.config(), text ? &*text : nullptr);
  std::vector<BatchItem> items = read_batch(f.batch, defaults, text ? &*text : nullptr);
  LocalStep step(model, f.prefill.chunking(),
                 PromptCacheOptions{static_cast<size_t>(f.prompt_cache_mib * 1024 * 1024), 8});
  const auto start = std::chrono::steady_clock::now();
  const std::vector<JobResult> results = run_batch(step, f.parallel, std::move(items), f.step_tokens);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  write_batch(f.batch_out == "-" ? "/dev/stdout" : f.batch_out, results);
  size_t generated = 0;
  for (const JobResult& r : results) generated += r.tokens.size();
  if (!f.model.quiet)
    fmt::print(stderr, "batch: {} sequences, {} at a time | {} tokens generated in {:.3f} s, {:.2f} tok/s overall\n",
               results.size(), f.parallel, generated, seconds, seconds > 0 ? generated / seconds : 0.0);
  return 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate a continuation and stream it");
  f->model.add_to(*cmd);
  f->prompt.add_to(*cmd, "");
  cmd->add_flag("--print-prompt", f->print_prompt,
                "Print the text the model is fed (the prompt, or with --chat the rendered template) and exit "
                "without loading the model");
  cmd->add_option("--max-tokens,-n", f->max_tokens, "Maximum number of tokens to generate")
      ->check(non_negative())
      ->capture_default_str();
  add_sampling_flags(*cmd, f->sampling);
  f->prefill.add_to(*cmd);
  cmd->add_option("--ids-out", f->ids_out, "Also write the generated ids as a JSON array to this file");
  cmd->add_option("--stats-json", f->stats_json,
                  "Write the run's statistics (token counts, tok/s, peak memory) as JSON to this file");
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Do not stop at the model's end-of-sequence tokens");
  cmd->add_option("--batch", f->batch,
                  "Generate for every line of this JSON-lines file together (continuous batching) instead of one "
                  "prompt: {\"ids\": [..]} or {\"prompt\": \"..\"} plus optional max_tokens, temperature, top_k, "
                  "top_p, min_p, seed, stop_tokens, cancel_after");
  cmd->add_option("--batch-out", f->batch_out, "With --batch: where the results go, one JSON line each (- = stdout)")
      ->capture_default_str();
  cmd->add_option("--parallel", f->parallel, "With --batch: sequences decoded together")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--step-tokens", f->step_tokens,
                  "With --batch: tokens per step, decode rows and prompt chunks together (0 = one prefill chunk per step)")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--prompt-cache-mib", f->prompt_cache_mib,
                  "With --batch: memory for KV caches of finished prompts that later lines may extend (0 = off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  return [f]() {
    if (!f->batch.empty()) {
      if (f->prompt.has_ids() || f->prompt.has_text()) throw InputError("--batch replaces --ids / --prompt; give one");
      return generate_batch(*f);
    }
    f->prompt.check("generate");
    f->sampling.validate();
    // Text mode: a tokenizer turns the prompt into ids and the generated ids back into text.
    std::optional<TextModel> text;
    if (f->prompt.has_text()) text = TextModel::load(f->model.model_dir);
    if (f->print_prompt) {
      if (!text) throw InputError("--print-prompt needs --prompt or --prompt-file");
      const std::string rendered = f->prompt.rendered(*text);
      std::fwrite(rendered.data(), 1, rendered.size(), stdout);
      return 0;
    }
    const std::vector<int> prompt_ids = f->prompt.token_ids(text);
    Model model = load_model(f->model, f->model.load_options());
    // One sequence through the engine's loop; its cache stays in the step's prompt cache for the statistics.
    LocalStep step(model, f->prefill.chunking(), PromptCacheOptions{std::numeric_limits<size_t>::max(), 1});
    GenerationJob job;
    job.prompt = prompt_ids;
    job.sampling = f->sampling;
    job.max_tokens = f->max_tokens;
    if (!f->ignore_eos) job.stop_tokens = stop_tokens(model.config(), text ? &*text : nullptr);
    TokenOutput output(text ? text->tokenizer.get() : nullptr);
    job.on_token = [&](int id) {
      output(id);
      return true;
    };
    mx::reset_peak_memory();
    const JobResult stats = run_one(step, std::move(job));
    const size_t peak_memory = mx::get_peak_memory();
    const size_t kv_bytes = step.cache_bytes();
    output.finish();
    fmt::print("\n");
    std::fflush(stdout);  // the statistics below go to stderr; keep them after the text
    if (!f->ids_out.empty()) {
      std::ofstream out(f->ids_out);
      if (!out) throw InputError(fmt::format("{}: cannot open for writing", f->ids_out));
      out << fmt::format("[{}]\n", fmt::join(stats.tokens, ", "));
    }
    if (!f->stats_json.empty()) {
      std::ofstream out(f->stats_json);
      if (!out) throw InputError(fmt::format("{}: cannot open for writing", f->stats_json));
      out << fmt::format(
          "{{\"prompt_tokens\": {}, \"generated_tokens\": {}, \"prefill_tps\": {}, \"decode_tps\": {}, "
          "\"prefill_seconds\": {}, \"decode_seconds\": {}, \"peak_memory\": {}, \"kv_cache_bytes\": {}, "
          "\"weight_bytes\": {}, \"finish_reason\": \"{}\"}}\n",
          stats.prompt_tokens, stats.tokens.size(), stats.prefill_tps(), stats.decode_tps(), stats.first_token_seconds,
          stats.decode_seconds, peak_memory, kv_bytes, model.weights().nbytes(), stats.finish_reason);
    }
    if (!f->model.quiet)
      fmt::print(stderr,
                 "prompt: {} tokens, {:.2f} tok/s | generation: {} tokens, {:.2f} tok/s | finish: {} | "
                 "peak memory: {} | KV cache: {} ({} per token)\n",
                 stats.prompt_tokens, stats.prefill_tps(), stats.tokens.size(), stats.decode_tps(),
                 stats.finish_reason, format_bytes(static_cast<double>(peak_memory)),
                 format_bytes(static_cast<double>(kv_bytes)),
                 format_bytes(static_cast<double>(kv_bytes_per_token(model.config(), model.last_layer() - model.first_layer(),
                                                                     mx::size_of(model.dtype())))));
    return 0;
  };
}

}  // namespace k2::cli
