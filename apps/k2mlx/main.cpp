// k2mlx command line: dispatches to the subcommands and maps errors to exit codes
// (2 = bad input, 1 = internal failure), printing one clear message.
#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"k2mlx: run Kimi-K2 and DeepSeek-V3 family models on MLX", "k2mlx"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "k2mlx 0.1.0");
  std::vector<std::pair<CLI::App*, k2::cli::Command>> commands;
  auto reg = [&](k2::cli::Command c) { commands.emplace_back(app.get_subcommands({}).back(), std::move(c)); };
  reg(k2::cli::add_generate(app));
  reg(k2::cli::add_logits(app));
  reg(k2::cli::add_inspect(app));
  reg(k2::cli::add_plan(app));
  reg(k2::cli::add_launch(app));
  reg(k2::cli::add_pipeline(app));
  reg(k2::cli::add_chat(app));
  reg(k2::cli::add_tokenize(app));
  reg(k2::cli::add_detokenize(app));
  reg(k2::cli::add_serve(app));
  reg(k2::cli::add_perplexity(app));
  // Every command-line mistake (unknown flag, bad number, value out of range, missing option) is bad
  // input: exit 2 with CLI11's message, which names the flag. --help and --version exit 0.
  app.failure_message([](const CLI::App* top, const CLI::Error& e) {
    std::string name;  // the subcommand being parsed, for the --help hint
    for (const CLI::App* sub : top->get_subcommands()) name = " " + sub->get_name();
    return fmt::format("error: {}\nRun `k2mlx{} --help` for more information.\n", e.what(), name);
  });
  // CLI11 would report an unknown command as "A subcommand is required".
  std::string names;
  bool known = argc < 2 || argv[1][0] == '-';
  for (const auto& [sub, run] : commands) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    known = known || sub->check_name(argv[1]);
  }
  if (!known) {
    fmt::print(stderr, "error: unknown command '{}' (commands: {})\nRun `k2mlx --help` for more information.\n",
               argv[1], names);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const k2::InputError& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "internal error: {}\n", e.what());
    return 1;
  }
  return 0;
}
