// `k2mlx tokenize` / `k2mlx detokenize`: the model folder's tokenizer from the command line, for
// debugging prompts and checking ids against other tools.
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "common.h"
#include "text_io.h"

namespace k2::cli {

Command add_tokenize(CLI::App& app) {
  struct Flags {
    std::string model, text;
    bool no_special = false, pieces = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  cmd->add_option("--model,-m", f->model, "Model folder (tiktoken.model or tokenizer.json)")->required();
  cmd->add_option("text", f->text, "Text to encode")->required();
  cmd->add_flag("--no-special", f->no_special, "Encode special-token strings like <|im_end|> as ordinary text");
  cmd->add_flag("--pieces", f->pieces, "Also print each token's text");
  return [f]() {
    auto tok = load_tokenizer(f->model);
    const std::vector<int> ids = tok->encode(f->text, !f->no_special);
    fmt::print("{}\n", fmt::join(ids, ","));
    if (f->pieces)
      for (int id : ids) fmt::print("{:>8}  {:?}\n", id, tok->id_to_piece(id));
    return 0;
  };
}

Command add_detokenize(CLI::App& app) {
  struct Flags {
    std::string model, ids;
    bool skip_special = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand("detokenize", "Print the text of comma-separated token ids");
  cmd->add_option("--model,-m", f->model, "Model folder (tiktoken.model or tokenizer.json)")->required();
  cmd->add_option("ids", f->ids, "Token ids, e.g. 1,2,3")->required();
  cmd->add_flag("--skip-special", f->skip_special, "Leave special tokens out of the text");
  return [f]() {
    auto tok = load_tokenizer(f->model);
    fmt::print("{}\n", tok->decode(parse_ids(f->ids), f->skip_special));
    return 0;
  };
}

}  // namespace k2::cli
