// The k2mlx subcommands: each registers its flags on a CLI11 subcommand and returns the function
// that runs it (exit code). Errors propagate as exceptions to main(), which maps them to exit codes.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace k2::cli {

using Command = std::function<int()>;

Command add_generate(CLI::App& app);
Command add_logits(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_plan(CLI::App& app);
Command add_launch(CLI::App& app);
Command add_pipeline(CLI::App& app);
Command add_chat(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_detokenize(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_perplexity(CLI::App& app);

}  // namespace k2::cli
