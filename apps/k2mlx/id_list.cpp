// Token-id lists as users type them: "1,2,3", "1 2 3", one per line, or a JSON array [1, 2, 3], each
// id checked against a fixed bound before conversion. Pure text in, ids out (fuzz/fuzz_id_list.cpp).
#include "id_list.h"

#include <exception>

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
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1E3738
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
  // As for the plain-text forms: an empty list is refused here (found by fuzz_id_list: " []" was accepted).
  if (ids.empty()) throw InputError(fmt::format("{}: no token ids (the JSON array is empty)", where));
  return ids;
}

}  // namespace

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

}  // namespace k2::cli
