// Prompts from the command line, from files and from stdin ("-"): reading a whole file, parsing token-id
// lists (comma- or whitespace-separated, or a JSON array), and the prompt flags generate and pipeline share
// (--ids / --ids-file / --prompt / --prompt-file, --chat, --system).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "id_list.h"
#include "text_io.h"

namespace k2::cli {

// The whole content of `path` ("-" = stdin), as bytes. `flag` names the option in errors.
std::string read_input(const std::string& path, const std::string& flag);

// Ids from --ids TEXT or --ids-file PATH (whichever is set); `ids_name` names the first in errors.
std::vector<int> ids_from(const std::string& ids, const std::string& ids_file, const std::string& ids_name = "--ids");

struct PromptFlags {
  std::string ids, ids_file, prompt, prompt_file, system, system_file;
  bool chat = false;

  void add_to(CLI::App& app, const std::string& what);  // `what`: how each rank / the command uses it
  bool has_text() const { return !prompt.empty() || !prompt_file.empty(); }
  bool has_ids() const { return !ids.empty() || !ids_file.empty(); }
  // Throws InputError when no prompt was given or --chat / --system lack a text prompt.
  void check(const std::string& command) const;
  // The text that is tokenized: the prompt, or (--chat) the rendered conversation.
  std::string rendered(const TextModel& text) const;
  // Prompt ids: parsed, or the rendered text encoded by `text` (which must be loaded when has_text()).
  std::vector<int> token_ids(const std::optional<TextModel>& text) const;
};

}  // namespace k2::cli
