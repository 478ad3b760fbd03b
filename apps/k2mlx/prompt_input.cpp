// Reading prompts and id lists from flags, files and stdin for the CLI commands.
#include "prompt_input.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"

namespace k2::cli {

std::string read_input(const std::string& path, const std::string& flag) {
  if (path == "-") {
    std::string s{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    if (std::cin.bad()) throw InputError(fmt::format("{} -: reading stdin failed", flag));
    return s;
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError(fmt::format("{} {}: is a directory, not a file", flag, path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{} {}: cannot open ({})", flag, path, std::strerror(errno)));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) throw InputError(fmt::format("{} {}: read failed", flag, path));
  return out.str();
}

std::vector<int> ids_from(const std::string& ids, const std::string& ids_file, const std::string& ids_name) {
  if (!ids_file.empty())
    return parse_ids(read_input(ids_file, "--ids-file"),
                     ids_file == "-" ? "--ids-file - (stdin)" : fmt::format("--ids-file {}", ids_file));
  return parse_ids(ids, ids_name);
}

void PromptFlags::add_to(CLI::App& app, const std::string& what) {
  auto* i = app.add_option("--ids", ids, "Prompt as token ids, e.g. 1,2,3" + what);
  auto* fi = app.add_option("--ids-file", ids_file,
                            "Prompt ids from a file ('-' = stdin): comma- or whitespace-separated, or a JSON array");
  auto* p = app.add_option("--prompt,-p", prompt,
                           "Prompt text, encoded with the model folder's tokenizer (special-token strings such as "
                           "<|im_end|> become control tokens); the output is streamed as text" + what);
  auto* fp = app.add_option("--prompt-file", prompt_file, "Prompt text from a file ('-' = stdin), as --prompt");
  for (auto* a : {i, fi, p, fp})
    for (auto* b : {i, fi, p, fp})
      if (a != b) a->excludes(b);
  app.add_flag("--chat", chat, "Wrap the prompt as a user turn in the model's chat template (with the generation prompt)");
  auto* s = app.add_option("--system", system, "System message for --chat (default: the template's own)");
  auto* fs = app.add_option("--system-file", system_file, "System message for --chat from a file ('-' = stdin)");
  s->excludes(fs);
  fs->excludes(s);
}

void PromptFlags::check(const std::string& command) const {
  if (!has_ids() && !has_text())
    throw InputError(fmt::format("{} needs a prompt: --ids, --ids-file, --prompt or --prompt-file", command));
  if (chat && !has_text()) throw InputError("--chat needs --prompt or --prompt-file");
  if ((!system.empty() || !system_file.empty()) && !chat) throw InputError("--system needs --chat");
  if (prompt_file == "-" && system_file == "-") throw InputError("--prompt-file and --system-file cannot both read stdin");
}

std::string PromptFlags::rendered(const TextModel& text) const {
  const std::string body = prompt_file.empty() ? prompt : read_input(prompt_file, "--prompt-file");
  const std::string sys = system_file.empty() ? system : read_input(system_file, "--system-file");
  return text.render_prompt(body, chat, sys);
}

std::vector<int> PromptFlags::token_ids(const std::optional<TextModel>& text) const {
  if (!has_text()) return ids_from(ids, ids_file);
  std::vector<int> out = text->tokenizer->encode(rendered(*text), /*allow_special=*/true);
  if (out.empty()) throw InputError("the prompt encodes to no tokens (is the prompt text empty?)");
  return out;
}

}  // namespace k2::cli
