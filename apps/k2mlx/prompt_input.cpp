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
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace k2::cli {

namespace {

constexpr long kMaxId = 2'000'000'000;

std::string shorten(const std::string& s) { return s.size() <= 40 ? s : s.substr(0, 37) + "..."; }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::vector<int> parse_json_ids(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(fmt::format("{}: not a valid JSON array of token ids ({})", where, e.what()));
  }
  if (!j.is_array()) throw InputError(fmt::format("{}: expected a JSON array of token ids", where));
  std::vector<int> ids;
  ids.reserve(j.size());
  for (size_t k = 0; k < j.size(); ++k) {
    const auto& v = j[k];
    if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > kMaxId)
      throw InputError(fmt::format("{}: element {} of the JSON array ({}) is not a non-negative token id", where,
                                   k + 1, shorten(v.dump())));
    ids.push_back(static_cast<int>(v.get<long long>()));
  }
  return ids;
}

}  // namespace

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

std::vector<int> parse_ids(const std::string& text, const std::string& where) {
  size_t i = 0;
  while (i < text.size() && is_space(text[i])) ++i;
  if (i < text.size() && text[i] == '[') return parse_json_ids(text, where);
  const bool multiline = text.find('\n') != std::string::npos;
  std::vector<int> ids;
  int line = 1;
  bool after_comma = false;  // a comma was read and no id after it yet
  auto where_at = [&]() { return multiline ? fmt::format("{} (line {})", where, line) : where; };
  for (i = 0; i < text.size();) {
    const char c = text[i];
    if (is_space(c)) {
      line += c == '\n';
      ++i;
      continue;
    }
    if (c == ',') {
      if (ids.empty() || after_comma) throw InputError(fmt::format("{}: empty element before ','", where_at()));
      after_comma = true;
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && !is_space(text[end]) && text[end] != ',') ++end;
    const std::string item = text.substr(i, end - i);
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.front() == '+' || v < 0 || v > kMaxId)
      throw InputError(fmt::format("{}: '{}' is not a non-negative token id (element {})", where_at(),
                                   shorten(item), ids.size() + 1));
    ids.push_back(static_cast<int>(v));
    after_comma = false;
    i = end;
  }
  if (after_comma) throw InputError(fmt::format("{}: ends with ','", where_at()));
  if (ids.empty()) throw InputError(fmt::format("{}: no token ids", where));
  return ids;
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
