// `k2mlx chat`: an interactive terminal conversation. Each turn is rendered with the model's chat
// template; the KV cache of the common prefix with the previous turn is reused, so only the new
// message is prefilled. Ctrl-C stops the current answer (or leaves at the prompt); Ctrl-D leaves.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/local_step.h"
#include "engine/scheduler.h"
#include "engine/sampler.h"
#include "prefill_flags.h"
#include "sampling_flags.h"
#include "prompt_input.h"
#include "text/tool_call_parser.h"
#include "text_io.h"

namespace k2::cli {

namespace {

std::atomic<bool> g_generating{false};
std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) {
  if (g_generating.load()) {
    g_interrupted.store(true);
    return;
  }
  // At the prompt: leave at once (only async-signal-safe calls here).
  static const char bye[] = "\n";
  std::fwrite(bye, 1, 1, stdout);
  std::_Exit(0);
}

struct ChatFlags {
  ModelFlags model;
  std::string system, system_file, prompt_file;
  bool print_prompt = false;
  int max_tokens = 1024;
  PrefillFlags prefill;
  SamplingParams sampling;
};

}  // namespace

Command add_chat(CLI::App& app) {
  auto f = std::make_shared<ChatFlags>();
  f->sampling.temperature = 0.6f;  // Kimi-K2-Instruct's recommended temperature (model card §5)
  CLI::App* cmd = app.add_subcommand("chat", "Interactive chat in the terminal (/reset clears the history)");
  f->model.add_to(*cmd);
  auto* sys = cmd->add_option("--system", f->system, "System message (default: the chat template's own)");
  auto* sys_file = cmd->add_option("--system-file", f->system_file, "System message from a file ('-' = stdin)");
  sys->excludes(sys_file);
  sys_file->excludes(sys);
  cmd->add_option("--prompt-file", f->prompt_file,
                  "First user message from a file ('-' = stdin: answered, then the chat ends at the end of input)");
  cmd->add_flag("--print-prompt", f->print_prompt, "Print each turn's rendered prompt (what the model is fed) to stderr");
  cmd->add_option("--max-tokens,-n", f->max_tokens, "Maximum tokens per answer")
      ->check(non_negative())
      ->capture_default_str();
  add_sampling_flags(*cmd, f->sampling);
  f->prefill.add_to(*cmd);
  return [f]() {
    f->sampling.validate();
    if (f->system_file == "-" && f->prompt_file == "-")
      throw InputError("--system-file and --prompt-file cannot both read stdin");
    if (!f->system_file.empty()) f->system = read_input(f->system_file, "--system-file");
    std::optional<std::string> first_message;
    if (!f->prompt_file.empty()) first_message = read_input(f->prompt_file, "--prompt-file");
    TextModel text = TextModel::load(f->model.model_dir);
    if (!text.chat_template) throw InputError("chat needs a chat template in the model folder");
    Model model = load_model(f->model, f->model.load_options());
    // One prompt kept for reuse: the next turn extends this conversation, so only its new tokens are prefilled.
    LocalStep step(model, f->prefill.chunking(), PromptCacheOptions{std::numeric_limits<size_t>::max(), 1});
    const std::vector<int> stops = stop_tokens(model.config(), &text);

    nlohmann::ordered_json history = nlohmann::ordered_json::array();
    if (!f->system.empty()) history.push_back({{"role", "system"}, {"content", f->system}});
    std::signal(SIGINT, on_sigint);
    if (!f->model.quiet)
      fmt::print(stderr, "chat with {} — Ctrl-D to leave, Ctrl-C to stop an answer, /reset to start over\n",
                 f->model.model_dir);
    std::string line;
    uint64_t turn = 0;  // user turns so far (sampling seeds)
    while (true) {
      if (first_message) {
        line = std::move(*first_message);
        first_message.reset();
      } else {
        fmt::print("> ");
        std::fflush(stdout);
        if (!std::getline(std::cin, line)) break;  // Ctrl-D / end of input
        if (line.empty()) continue;
      }
      if (line == "/reset") {
        history.erase(history.begin() + (f->system.empty() ? 0 : 1), history.end());
        continue;
      }
      if (line == "/exit" || line == "/quit") break;
      history.push_back({{"role", "user"}, {"content", line}});
      const std::string rendered = text.render_chat(history);
      if (f->print_prompt) {
        std::fwrite(rendered.data(), 1, rendered.size(), stderr);
        std::fputc('\n', stderr);
      }
      const std::vector<int> prompt = text.tokenizer->encode(rendered, /*allow_special=*/true);
      GenerationJob job;
      job.prompt = prompt;
      job.sampling = f->sampling;
      // Each turn draws from its own stream (seed + turn): one seed would restart the same random draws every
      // turn, so that a repeated question (after /reset, or a regeneration) could only get the same answer.
      job.sampling.seed = f->sampling.seed + turn++;
      job.max_tokens = f->max_tokens;
      job.stop_tokens = stops;
      TextPrinter printer(*text.tokenizer);
      job.on_token = [&](int id) {
        printer(id);
        return !g_interrupted.load();
      };
      g_interrupted = false;
      g_generating = true;
      const JobResult stats = run_one(step, std::move(job));
      g_generating = false;
      printer.finish();
      fmt::print("\n");
      if (!f->model.quiet)
        fmt::print(stderr, "[{} new prompt tokens ({} reused), {:.1f} tok/s prefill; {} tokens, {:.1f} tok/s{}]\n",
                   stats.prompt_tokens - stats.cached_tokens, stats.cached_tokens, stats.prefill_tps(),
                   stats.tokens.size(), stats.decode_tps(), stats.finish_reason == "cancelled" ? ", interrupted" : "");

      const ParsedOutput parsed = parse_model_output(text.decode_known(stats.tokens));
      nlohmann::ordered_json reply = {{"role", "assistant"}, {"content", parsed.content}};
      if (!parsed.reasoning.empty()) reply["reasoning_content"] = parsed.reasoning;
      history.push_back(std::move(reply));
    }
    fmt::print("\n");
    return 0;
  };
}

}  // namespace k2::cli
