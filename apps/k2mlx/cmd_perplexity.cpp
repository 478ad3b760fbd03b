// `k2mlx perplexity`: how well a model predicts a text (perplexity over windows), and, given a base model,
// how far a quantized copy's next-token distributions are from the original's (KL divergence, top-1
// agreement, the worst positions). Text is tokenized without special tokens; --ids-file skips the tokenizer.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/perplexity.h"
#include "prefill_flags.h"
#include "prompt_input.h"
#include "text_io.h"

namespace k2::cli {

namespace {

struct PerplexityFlags {
  ModelFlags model;
  std::string base_model;
  std::string text_file, ids_file;
  PerplexityOptions options;
  PrefillFlags prefill;
  std::string json_out;
};

nlohmann::ordered_json to_json(const PerplexityReport& r) {
  nlohmann::ordered_json j = {{"windows", r.windows},
                              {"window", r.window},
                              {"score_from", r.score_from},
                              {"scored_tokens", r.scored.size()},
                              {"mean_nll", r.mean_nll},
                              {"nll_stderr", r.nll_stderr},
                              {"ppl", r.ppl()},
                              {"ppl_stderr", r.ppl_stderr()}};
  if (r.has_base) {
    j["base_mean_nll"] = r.base_mean_nll;
    j["base_ppl"] = std::exp(r.base_mean_nll);
    j["mean_kl"] = r.mean_kl;
    j["kl_stderr"] = r.kl_stderr;
    j["median_kl"] = r.median_kl;
    j["p99_kl"] = r.p99_kl;
    j["max_kl"] = r.max_kl;
    j["same_top"] = r.same_top;
    j["same_top_stderr"] = r.same_top_stderr;
    j["rms_dp"] = r.rms_dp;
    nlohmann::ordered_json worst = nlohmann::ordered_json::array();
    for (const ScoredToken& t : r.worst)
      worst.push_back({{"position", t.position}, {"token", t.token}, {"kl", t.kl}, {"nll", t.nll},
                       {"base_nll", t.base_nll}, {"top", t.top}, {"base_top", t.base_top}});
    j["worst"] = worst;
  }
  return j;
}

void print_report(const PerplexityReport& r) {
  fmt::print("{} windows of {} tokens, {} tokens scored (tokens {}..{} of each window)\n", r.windows, r.window,
             r.scored.size(), r.score_from, r.window - 1);
  fmt::print("PPL = {:.4f} +/- {:.4f}   (mean NLL {:.6f} +/- {:.6f})\n", r.ppl(), r.ppl_stderr(), r.mean_nll,
             r.nll_stderr);
  if (!r.has_base) return;
  const double base_ppl = std::exp(r.base_mean_nll);
  fmt::print("base PPL = {:.4f} +/- {:.4f}\n", base_ppl, base_ppl * r.base_nll_stderr);
  fmt::print("ln(PPL / base PPL) = {:.6f}\n", r.mean_nll - r.base_mean_nll);
  fmt::print("mean KL divergence = {:.6f} +/- {:.6f} nats   (median {:.6f}, 99% {:.6f}, max {:.6f})\n", r.mean_kl,
             r.kl_stderr, r.median_kl, r.p99_kl, r.max_kl);
  fmt::print("same top token = {:.3f} +/- {:.3f} %\n", 100 * r.same_top, 100 * r.same_top_stderr);
  fmt::print("RMS delta p(token) = {:.4f} %\n", 100 * r.rms_dp);
  for (const ScoredToken& t : r.worst)
    fmt::print("  worst: position {} token {}: KL {:.6f}, NLL {:.4f} (base {:.4f}), top {} (base {})\n", t.position,
               t.token, t.kl, t.nll, t.base_nll, t.top, t.base_top);
}

}  // namespace

Command add_perplexity(CLI::App& app) {
  auto f = std::make_shared<PerplexityFlags>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "Perplexity of a text, and KL divergence / top-1 agreement against a base model");
  f->model.add_to(*cmd);
  cmd->add_option("--base-model", f->base_model,
                  "The model to compare with (e.g. the bf16 or FP8 original), loaded beside --model with the same "
                  "--dtype/--kernels/--threads; --fp8-requantize applies to --model only (the base is used as stored)");
  auto* text = cmd->add_option("--text-file", f->text_file, "Text to score ('-' = stdin), tokenized without special tokens");
  auto* ids = cmd->add_option("--ids-file", f->ids_file,
                              "Token ids to score instead ('-' = stdin): comma- or whitespace-separated, or a JSON array");
  text->excludes(ids);
  ids->excludes(text);
  cmd->add_option("--window", f->options.window, "Tokens per window (each starts with an empty cache)")
      ->capture_default_str();
  cmd->add_option("--score-from", f->options.score_from,
                  "First scored token of each window (-1 = window/2: every scored token has half a window of context)")
      ->capture_default_str();
  cmd->add_option("--max-windows", f->options.max_windows, "Score at most this many windows (0 = all)")
      ->capture_default_str();
  cmd->add_option("--worst", f->options.worst, "Positions of largest KL divergence to list")->capture_default_str();
  f->prefill.add_to(*cmd);
  cmd->add_option("--json", f->json_out, "Also write the figures (and the worst positions) as JSON to this file");
  return [f]() {
    if (f->text_file.empty() == f->ids_file.empty()) throw InputError("perplexity needs --text-file or --ids-file");
    std::vector<int> ids;
    if (!f->ids_file.empty()) {
      ids = ids_from("", f->ids_file, "--ids-file");
    } else {
      const std::string text = read_input(f->text_file, "--text-file");
      if (text.empty()) throw InputError(fmt::format("--text-file {} is empty", f->text_file));
      ids = TextModel::load(f->model.model_dir).tokenizer->encode(text, /*allow_special=*/false);
    }
    const Model model = load_model(f->model, f->model.load_options());
    std::optional<Model> base;
    if (!f->base_model.empty()) {
      ModelFlags b = f->model;
      b.model_dir = f->base_model;
      b.fp8_requantize.clear();
      base.emplace(load_model(b, b.load_options()));
    }
    const int vocab = model.config().vocab_size;
    for (int id : ids)
      if (id < 0 || id >= vocab) throw InputError(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
    PerplexityOptions o = f->options;
    o.prefill = f->prefill.chunking();
    const PerplexityReport r = measure_perplexity(model, base ? &*base : nullptr, ids, o);
    print_report(r);
    if (!f->json_out.empty()) {
      std::ofstream out(f->json_out);
      if (!out) throw InputError(fmt::format("cannot write --json {}", f->json_out));
      out << to_json(r).dump(2) << "\n";
    }
    return 0;
  };
}

}  // namespace k2::cli
