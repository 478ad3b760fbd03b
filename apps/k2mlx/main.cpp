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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
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
