// `k2mlx generate`: streams generated tokens for a prompt (ids or text, from flags, files or stdin), then
// prints prefill and decode speed and peak memory; --print-prompt shows the rendered prompt instead.
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/generate.h"
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
};

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
  return [f]() {
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
    Session session(model);
    Sampler sampler(f->sampling);
    GenerateOptions opts;
    opts.max_tokens = f->max_tokens;
    opts.prefill = f->prefill.chunking();
    if (!f->ignore_eos)
      opts.stop_tokens = text ? text->stop_tokens(model.config().eos_token_ids) : model.config().eos_token_ids;
    TokenOutput output(text ? text->tokenizer.get() : nullptr);
    GenerationStats stats = generate(session, prompt_ids, sampler, opts, [&](int id) {
      output(id);
      return true;
    });
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
          stats.prompt_tokens, stats.tokens.size(), stats.prefill_tps(), stats.decode_tps(), stats.prefill_seconds,
          stats.decode_seconds, stats.peak_memory, session.cache().nbytes(), model.weights().nbytes(),
          stats.finish_reason);
    }
    if (!f->model.quiet)
      fmt::print(stderr,
                 "prompt: {} tokens, {:.2f} tok/s | generation: {} tokens, {:.2f} tok/s | finish: {} | "
                 "peak memory: {} | KV cache: {} ({} per token)\n",
                 stats.prompt_tokens, stats.prefill_tps(), stats.tokens.size(), stats.decode_tps(),
                 stats.finish_reason, format_bytes(static_cast<double>(stats.peak_memory)),
                 format_bytes(static_cast<double>(session.cache().nbytes())),
                 format_bytes(static_cast<double>(kv_bytes_per_token(model.config(), model.last_layer() - model.first_layer(),
                                                                     mx::size_of(model.dtype())))));
    return 0;
  };
}

}  // namespace k2::cli
