// k2_text_probe: drives the text library from the Python comparison tests (tests/python/text).
// Records on stdin are "<byte length>\n<bytes>\n"; results go to stdout, one line (or record) each.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "text/chat_template.h"
#include "text/regex.h"
#include "text/streaming_decoder.h"
#include "text/tiktoken_tokenizer.h"
#include "text/tool_call_parser.h"
#include "text/utf8.h"

namespace {

using k2::Tokenizer;

struct Args {
  std::string command;
  std::string model, ranks, specials, pattern, template_file, format = "kimi";
  bool no_special = false, no_chunking = false, skip_special = false, kimi_sort = false, thinking_open = false;
};

Args parse_args(int argc, char** argv) {
  Args a;
  if (argc < 2) throw k2::InputError("usage: k2_text_probe COMMAND [options]");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw k2::InputError(s + " needs a value");
      return argv[++i];
    };
    if (s == "--model") a.model = value();
    else if (s == "--ranks") a.ranks = value();
    else if (s == "--specials") a.specials = value();
    else if (s == "--pattern") a.pattern = value();
    else if (s == "--template") a.template_file = value();
    else if (s == "--format") a.format = value();
    else if (s == "--no-special") a.no_special = true;
    else if (s == "--no-chunking") a.no_chunking = true;
    else if (s == "--skip-special") a.skip_special = true;
    else if (s == "--kimi-sort") a.kimi_sort = true;
    else if (s == "--thinking-open") a.thinking_open = true;
    else throw k2::InputError("unknown option " + s);
  }
  return a;
}

bool read_record(std::istream& in, std::string& out) {
  std::string len_line;
  if (!std::getline(in, len_line)) return false;
  const std::size_t n = std::stoull(len_line);
  out.resize(n);
  in.read(out.data(), static_cast<std::streamsize>(n));
  in.get();  // the newline after the bytes
  return static_cast<std::size_t>(in.gcount()) == 1 || n == 0;
}

void write_record(std::ostream& out, const std::string& s) { out << s.size() << '\n' << s << '\n'; }

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw k2::InputError("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::unique_ptr<Tokenizer> make_tokenizer(const Args& a) {
  if (!a.model.empty()) return k2::load_tokenizer(a.model);
  if (a.ranks.empty()) throw k2::InputError("need --model or --ranks");
  // --ranks with the Kimi pattern (or --pattern FILE holding a Rust-syntax pat_str) and specials
  // from a JSON object {"<|name|>": id}.
  std::vector<k2::AddedToken> specials;
  if (!a.specials.empty()) {
    const nlohmann::json table = nlohmann::json::parse(slurp(a.specials));
    for (const auto& [name, id] : table.items()) {
      k2::AddedToken t;
      t.content = name;
      t.id = id.get<int>();
      specials.push_back(t);
    }
  }
  const std::string pat = a.pattern.empty() ? std::string(k2::kimi_pat_str()) : slurp(a.pattern);
  return k2::make_tiktoken_tokenizer(k2::read_tiktoken_ranks(a.ranks), pat, specials, !a.no_chunking);
}

std::vector<int> parse_ids(const std::string& line) {
  std::vector<int> ids;
  std::istringstream ss(line);
  int id;
  while (ss >> id) ids.push_back(id);
  return ids;
}

int run(const Args& a) {
  std::ios::sync_with_stdio(false);
  std::string rec, line;
  if (a.command == "encode") {
    auto tok = make_tokenizer(a);
    while (read_record(std::cin, rec)) {
      const std::vector<int> ids = tok->encode(rec, !a.no_special);
      for (std::size_t k = 0; k < ids.size(); ++k) std::cout << (k ? " " : "") << ids[k];
      std::cout << '\n';
    }
  } else if (a.command == "decode" || a.command == "stream") {
    auto tok = make_tokenizer(a);
    while (std::getline(std::cin, line)) {
      const std::vector<int> ids = parse_ids(line);
      if (a.command == "decode") {
        write_record(std::cout, tok->decode(ids, a.skip_special));
        continue;
      }
      k2::StreamingDecoder dec(*tok, a.skip_special);
      std::string text;
      for (int id : ids) {
        const std::string chunk = dec.push(id);
        if (!k2::utf8::is_valid(chunk)) {
          std::cerr << "stream emitted invalid UTF-8\n";
          return 3;
        }
        text += chunk;
      }
      text += dec.flush();
      write_record(std::cout, text);
    }
  } else if (a.command == "pieces") {
    k2::Regex re(k2::translate_regex(a.pattern.empty() ? std::string(k2::kimi_pat_str()) : slurp(a.pattern)));
    while (read_record(std::cin, rec)) {
      bool first = true;
      rec = k2::utf8::sanitize(rec);  // the regex layer requires valid UTF-8
      for (const k2::Span& s : re.find_all(rec)) {
        std::cout << (first ? "" : " ") << s.begin << "," << s.end;
        first = false;
      }
      std::cout << '\n';
    }
  } else if (a.command == "match") {
    k2::Regex re(k2::translate_regex(a.pattern));
    while (read_record(std::cin, rec)) std::cout << (re.full_match(k2::utf8::sanitize(rec)) ? '1' : '0') << '\n';
  } else if (a.command == "render") {
    const nlohmann::ordered_json specials =
        a.specials.empty() ? nlohmann::ordered_json::object() : nlohmann::ordered_json::parse(slurp(a.specials));
    k2::ChatTemplate tmpl(slurp(a.template_file), specials, a.kimi_sort);
    while (std::getline(std::cin, line)) {
      const auto req = nlohmann::ordered_json::parse(line);
      k2::ChatRenderOptions o;
      o.tools = req.value("tools", nlohmann::ordered_json());
      o.add_generation_prompt = req.value("add_generation_prompt", false);
      if (req.contains("extra")) o.extra = req["extra"];
      nlohmann::ordered_json res;
      try {
        res["ok"] = tmpl.render(req.at("messages"), o);
      } catch (const k2::InputError& e) {
        res["error"] = e.what();
      }
      std::cout << res.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    }
  } else if (a.command == "parse") {
    k2::ParseOptions o;
    o.format = a.format == "deepseek" ? k2::ToolCallFormat::DeepSeek : k2::ToolCallFormat::Kimi;
    o.thinking_open = a.thinking_open;
    while (read_record(std::cin, rec)) {
      const k2::ParsedOutput p = k2::parse_model_output(rec, o);
      nlohmann::ordered_json j;
      j["reasoning"] = p.reasoning;
      j["content"] = p.content;
      j["tool_calls"] = nlohmann::ordered_json::array();
      for (const auto& c : p.tool_calls)
        j["tool_calls"].push_back({{"id", c.id}, {"name", c.name}, {"arguments", c.arguments}, {"index", c.index}});
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    }
  } else if (a.command == "bench") {
    auto tok = make_tokenizer(a);
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    const std::string text = ss.str();
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int> ids = tok->encode(text, !a.no_special);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << ids.size() << " " << s << '\n';
  } else {
    throw k2::InputError("unknown command " + a.command);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "k2_text_probe: " << e.what() << '\n';
    return 2;
  }
}
