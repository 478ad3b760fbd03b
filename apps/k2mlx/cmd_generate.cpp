// `k2mlx generate`: streams generated tokens for a prompt given as token ids, then prints prefill
// and decode speed and peak memory.
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
#include "text_io.h"

namespace k2::cli {
namespace mx = mlx::core;

namespace {

struct GenerateFlags {
  ModelFlags model;
  std::string ids;
  std::string prompt;
  bool chat = false;
  std::string system;
  int max_tokens = 128;
  int prefill_chunk = 512;
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
  auto* ids = cmd->add_option("--ids", f->ids, "Prompt as comma-separated token ids");
  auto* prompt = cmd->add_option("--prompt,-p", f->prompt,
                                 "Prompt text, encoded with the model folder's tokenizer (special-token strings "
                                 "such as <|im_end|> become control tokens); the output is streamed as text");
  ids->excludes(prompt);
  cmd->add_flag("--chat", f->chat,
                "Wrap --prompt as a user turn in the model's chat template (with the generation prompt)");
  cmd->add_option("--system", f->system, "System message for --chat (default: the template's own)");
  cmd->add_option("--max-tokens,-n", f->max_tokens, "Maximum number of tokens to generate")->capture_default_str();
  cmd->add_option("--temp,--temperature", f->sampling.temperature, "Sampling temperature (0 = greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", f->sampling.top_k, "Keep the K most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", f->sampling.top_p, "Nucleus sampling: keep the smallest set with this mass (1 = off)")
      ->capture_default_str();
  cmd->add_option("--min-p", f->sampling.min_p, "Drop tokens below MIN_P times the top probability (0 = off)")
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", f->sampling.repetition_penalty,
                  "Divide positive / multiply negative logits of recent tokens by this (1 = off)")
      ->capture_default_str();
  cmd->add_option("--repetition-context", f->sampling.repetition_context,
                  "How many recent tokens the repetition penalty considers")
      ->capture_default_str();
  cmd->add_option("--seed", f->sampling.seed, "Random seed for sampling")->capture_default_str();
  cmd->add_option("--prefill-chunk", f->prefill_chunk, "Prefill long prompts this many tokens at a time")
      ->capture_default_str();
  cmd->add_option("--ids-out", f->ids_out, "Also write the generated ids as a JSON array to this file");
  cmd->add_option("--stats-json", f->stats_json,
                  "Write the run's statistics (token counts, tok/s, peak memory) as JSON to this file");
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Do not stop at the model's end-of-sequence tokens");
  return [f]() {
    if (f->ids.empty() && f->prompt.empty()) throw InputError("generate needs --ids or --prompt");
    if (f->chat && f->prompt.empty()) throw InputError("--chat needs --prompt");
    f->sampling.validate();
    // Text mode: a tokenizer turns the prompt into ids and the generated ids back into text.
    std::optional<TextModel> text;
    std::vector<int> prompt_ids;
    if (!f->prompt.empty()) {
      text = TextModel::load(f->model.model_dir);
      prompt_ids = text->encode_prompt(f->prompt, f->chat, f->system);
    } else {
      prompt_ids = parse_ids(f->ids);
    }
    Model model = load_model(f->model, f->model.load_options());
    Session session(model);
    Sampler sampler(f->sampling);
    GenerateOptions opts;
    opts.max_tokens = f->max_tokens;
    opts.prefill_chunk = f->prefill_chunk;
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
