// `k2mlx tokenize` / `k2mlx detokenize`: the model folder's tokenizer from the command line, for
// debugging prompts and checking ids against other tools.
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "prompt_input.h"
#include "text_io.h"

namespace k2::cli {

Command add_tokenize(CLI::App& app) {
  struct Flags {
    std::string model, text, file;
    bool no_special = false, pieces = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  cmd->add_option("--model,-m", f->model, "Model folder (tiktoken.model or tokenizer.json)")->required();
  auto* text = cmd->add_option("text", f->text, "Text to encode");
  auto* file = cmd->add_option("--prompt-file,--file", f->file, "Encode the text of this file ('-' = stdin)");
  text->excludes(file);
  file->excludes(text);
  cmd->add_flag("--no-special", f->no_special, "Encode special-token strings like <|im_end|> as ordinary text");
  cmd->add_flag("--pieces", f->pieces, "Also print each token's text");
  return [f]() {
    if (f->text.empty() && f->file.empty()) throw InputError("tokenize needs a text argument or --prompt-file");
    const std::string input = f->file.empty() ? f->text : read_input(f->file, "--prompt-file");
    auto tok = load_tokenizer(f->model);
    const std::vector<int> ids = tok->encode(input, !f->no_special);
    fmt::print("{}\n", fmt::join(ids, ","));
    if (f->pieces)
      for (int id : ids) fmt::print("{:>8}  {:?}\n", id, tok->id_to_piece(id));
    return 0;
  };
}

Command add_detokenize(CLI::App& app) {
  struct Flags {
    std::string model, ids, ids_file;
    bool skip_special = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand("detokenize", "Print the text of token ids");
  cmd->add_option("--model,-m", f->model, "Model folder (tiktoken.model or tokenizer.json)")->required();
  auto* ids = cmd->add_option("ids", f->ids, "Token ids, e.g. 1,2,3");
  auto* ids_file = cmd->add_option("--ids-file", f->ids_file,
                                   "Token ids from a file ('-' = stdin): comma- or whitespace-separated, or a JSON array");
  ids->excludes(ids_file);
  ids_file->excludes(ids);
  cmd->add_flag("--skip-special", f->skip_special, "Leave special tokens out of the text");
  return [f]() {
    if (f->ids.empty() && f->ids_file.empty()) throw InputError("detokenize needs an ids argument or --ids-file");
    const std::vector<int> ids = ids_from(f->ids, f->ids_file, "ids");
    auto tok = load_tokenizer(f->model);
    const std::string text = tok->decode(ids, f->skip_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  };
}

}  // namespace k2::cli
