// Field-by-field checks of OpenAI request bodies, following the OpenAI API reference: types, ranges,
// the n=1 / unsupported-feature refusals, and tool_choice resolution against the declared tools.
#include "server/openai_request.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "server/api_error.h"
#include "server/request_fields.h"

namespace k2 {
namespace {

using ojson = nlohmann::ordered_json;

std::string type_name(const ojson& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

using request_fields::bad;

[[noreturn]] void wrong_type(const std::string& param, const std::string& expected, const ojson& v) {
  bad(param, fmt::format("'{}' must be {}, got {}", param, expected, type_name(v)));
}

using request_fields::field;

bool get_bool(const ojson& body, const char* name, bool fallback) {
  const ojson* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) wrong_type(name, "a boolean", *v);
  return v->get<bool>();
}

std::optional<double> get_number(const ojson& body, const char* name, double lo, double hi) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(name, "a number", *v);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

std::optional<long long> get_int(const ojson& body, const char* name, long long lo, long long hi) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  // A float such as 3.0 counts as an integer; its range is checked before the cast (casting 1e300 to an
  // integer is undefined behaviour).
  const double d = v->is_number_float() ? v->get<double>() : 0.0;
  const bool in_range = d >= static_cast<double>(lo) && d <= static_cast<double>(hi) && std::abs(d) < 9.2e18;
  if (v->is_number_float() && std::floor(d) == d && !in_range)
    bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, v->dump()));
  const bool integral_float = v->is_number_float() && std::floor(d) == d;
  if (!v->is_number_integer() && !v->is_number_unsigned() && !integral_float) wrong_type(name, "an integer", *v);
  if (v->is_number_unsigned() && v->get<unsigned long long>() > static_cast<unsigned long long>(hi))
    bad(name, fmt::format("'{}' must be at most {}, got {}", name, hi, v->dump()));
  const long long x = integral_float ? static_cast<long long>(d) : v->get<long long>();
  if (x < lo || x > hi) bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

void refuse_unless(bool ok, const char* param, const std::string& what) {
  if (!ok) bad(param, fmt::format("'{}': {} is not supported by this server", param, what));
}

// Deeper nesting is refused while parsing, before a tree is built: copying, printing and rendering a JSON
// value each recurse once per level, and a body nested 100,000 levels deep (a few hundred kilobytes)
// would overflow a thread's stack. OpenAI tool schemas and message arrays need a few dozen levels.
constexpr int kMaxBodyNesting = 64;

ojson parse_body(const std::string& body) {
  ojson j;
  auto limit_depth = [](int depth, nlohmann::json::parse_event_t event, ojson&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= kMaxBodyNesting)
      bad("", fmt::format("the request body is nested more than {} levels deep", kMaxBodyNesting));
    return true;
  };
  try {
    j = ojson::parse(body, limit_depth);
  } catch (const nlohmann::json::parse_error& e) {
    bad("", fmt::format("the request body is not valid JSON: {}", e.what()));
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range.406: a number such as 1e400 overflows a double
    bad("", fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) bad("", fmt::format("the request body must be a JSON object, got {}", type_name(j)));
  return j;
}

// Fields both endpoints share: model, stream, sampling, limits, stop, n, logprobs, penalties.
void parse_common(const ojson& j, ApiRequest& r) {
  if (const ojson* m = field(j, "model")) {
    if (!m->is_string()) wrong_type("model", "a string", *m);
    r.model = m->get<std::string>();
  }
  r.stream = get_bool(j, "stream", false);
  if (const ojson* so = field(j, "stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", "an object", *so);
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    r.include_usage = get_bool(*so, "include_usage", false);
  }
  if (auto n = get_int(j, "n", 1, 128)) refuse_unless(*n == 1, "n", fmt::format("n={} (only n=1)", *n));
  if (auto t = get_number(j, "temperature", 0.0, 2.0)) r.sampling.temperature = static_cast<float>(*t);
  if (auto p = get_number(j, "top_p", 0.0, 1.0)) {
    if (*p <= 0.0) bad("top_p", "'top_p' must be greater than 0");
    r.sampling.top_p = static_cast<float>(*p);
  }
  if (auto k = get_int(j, "top_k", -1, std::numeric_limits<int>::max())) r.sampling.top_k = static_cast<int>(std::max(0LL, *k));
  if (auto mp = get_number(j, "min_p", 0.0, 1.0)) r.sampling.min_p = static_cast<float>(*mp);
  if (auto rp = get_number(j, "repetition_penalty", 0.0, 10.0)) {
    if (*rp <= 0.0) bad("repetition_penalty", "'repetition_penalty' must be greater than 0");
    r.sampling.repetition_penalty = static_cast<float>(*rp);
  }
  if (auto s = get_int(j, "seed", std::numeric_limits<long long>::min(), std::numeric_limits<long long>::max()))
    r.sampling.seed = static_cast<uint64_t>(*s);
  for (const char* p : {"frequency_penalty", "presence_penalty"})
    if (auto v = get_number(j, p, -2.0, 2.0))
      refuse_unless(*v == 0.0, p, fmt::format("a non-zero {} (use repetition_penalty)", p));
  if (const ojson* lb = field(j, "logit_bias")) {
    if (!lb->is_object()) wrong_type("logit_bias", "an object", *lb);
    refuse_unless(lb->empty(), "logit_bias", "logit_bias");
  }
  // max_completion_tokens replaces the deprecated max_tokens; either is accepted.
  std::optional<long long> mt = get_int(j, "max_tokens", 0, std::numeric_limits<int>::max());
  if (auto mct = get_int(j, "max_completion_tokens", 0, std::numeric_limits<int>::max())) mt = mct;
  // Scoring a text (completions with echo, as evaluation harnesses do) needs no new token.
  const bool scoring = !r.chat && field(j, "echo") && (*field(j, "echo")) == true;
  if (mt) {
    if (*mt < (scoring ? 0 : 1)) bad(j.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
                     fmt::format("the token limit must be at least 1, got {}", *mt));
    r.max_tokens = static_cast<int>(*mt);
  }
  if (const ojson* st = field(j, "stop")) {
    if (st->is_string()) {
      r.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      if (st->size() > 4) bad("stop", fmt::format("'stop' may hold at most 4 sequences, got {}", st->size()));
      for (const auto& s : *st) {
        if (!s.is_string()) wrong_type("stop", "a string or an array of strings", s);
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings", *st);
    }
    for (const auto& s : r.stop)
      if (s.empty()) bad("stop", "'stop' sequences must not be empty");
  }
}

void check_content(const ojson& content, const std::string& where, bool may_be_null) {
  if (content.is_null()) {
    if (!may_be_null) bad(where, fmt::format("'{}' must not be null for this role", where));
    return;
  }
  if (content.is_string()) return;
  if (!content.is_array()) wrong_type(where, "a string, an array of content parts or null", content);
  for (size_t i = 0; i < content.size(); ++i) {
    const ojson& part = content[i];
    const std::string p = fmt::format("{}[{}]", where, i);
    if (!part.is_object()) wrong_type(p, "an object", part);
    const ojson* type = field(part, "type");
    if (!type || !type->is_string()) bad(p + ".type", fmt::format("'{}.type' must be a string", p));
    if (*type == "text") {
      const ojson* text = field(part, "text");
      if (!text || !text->is_string()) bad(p + ".text", fmt::format("'{}.text' must be a string", p));
    } else {
      refuse_unless(false, "messages", fmt::format("content part type '{}'", type->get<std::string>()));
    }
  }
}

void parse_tool_calls(const ojson& calls, const std::string& where) {
  if (!calls.is_array()) wrong_type(where, "an array", calls);
  for (size_t i = 0; i < calls.size(); ++i) {
    const ojson& c = calls[i];
    const std::string p = fmt::format("{}[{}]", where, i);
    if (!c.is_object()) wrong_type(p, "an object", c);
    const ojson* id = field(c, "id");
    if (!id || !id->is_string()) bad(p + ".id", fmt::format("'{}.id' must be a string", p));
    const ojson* fn = field(c, "function");
    if (!fn || !fn->is_object()) bad(p + ".function", fmt::format("'{}.function' must be an object", p));
    const ojson* name = field(*fn, "name");
    if (!name || !name->is_string()) bad(p + ".function.name", fmt::format("'{}.function.name' must be a string", p));
    const ojson* args = field(*fn, "arguments");
    if (args && !args->is_string() && !args->is_object())
      wrong_type(p + ".function.arguments", "a string", *args);
  }
}

ojson parse_messages(const ojson& j) {
  const ojson* msgs = field(j, "messages");
  if (!msgs) bad("messages", "'messages' is required");
  if (!msgs->is_array()) wrong_type("messages", "an array", *msgs);
  if (msgs->empty()) bad("messages", "'messages' must contain at least one message");
  ojson out = ojson::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const ojson& m = (*msgs)[i];
    const std::string p = fmt::format("messages[{}]", i);
    if (!m.is_object()) wrong_type(p, "an object", m);
    const ojson* role = field(m, "role");
    if (!role || !role->is_string()) bad(p + ".role", fmt::format("'{}.role' must be a string", p));
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      bad(p + ".role", fmt::format("'{}.role' must be one of system, developer, user, assistant, tool; got '{}'", p, r));
    ojson msg = m;
    msg["role"] = r;
    const bool has_calls = field(m, "tool_calls") != nullptr;
    if (!m.contains("content") && !(r == "assistant" && has_calls))
      bad(p + ".content", fmt::format("'{}.content' is required", p));
    check_content(m.contains("content") ? m["content"] : ojson(nullptr), p + ".content", r == "assistant");
    if (!msg.contains("content")) msg["content"] = nullptr;
    if (has_calls) {
      if (r != "assistant") bad(p + ".tool_calls", "only assistant messages may carry 'tool_calls'");
      parse_tool_calls(m["tool_calls"], p + ".tool_calls");
    }
    if (r == "tool") {
      const ojson* id = field(m, "tool_call_id");
      if (!id || !id->is_string()) bad(p + ".tool_call_id", fmt::format("'{}.tool_call_id' must be a string", p));
    }
    if (const ojson* name = field(m, "name"); name && !name->is_string()) wrong_type(p + ".name", "a string", *name);
    out.push_back(std::move(msg));
  }
  return out;
}

void parse_tools(const ojson& j, ApiRequest& r) {
  if (const ojson* tools = field(j, "tools")) {
    if (!tools->is_array()) wrong_type("tools", "an array", *tools);
    for (size_t i = 0; i < tools->size(); ++i) {
      const ojson& t = (*tools)[i];
      const std::string p = fmt::format("tools[{}]", i);
      if (!t.is_object()) wrong_type(p, "an object", t);
      const ojson* type = field(t, "type");
      if (!type || *type != "function") bad(p + ".type", fmt::format("'{}.type' must be \"function\"", p));
      const ojson* fn = field(t, "function");
      if (!fn || !fn->is_object()) bad(p + ".function", fmt::format("'{}.function' must be an object", p));
      const ojson* name = field(*fn, "name");
      if (!name || !name->is_string() || name->get<std::string>().empty())
        bad(p + ".function.name", fmt::format("'{}.function.name' must be a non-empty string", p));
    }
    if (!tools->empty()) r.tools = *tools;
  }
  const bool have_tools = !r.tools.is_null();
  r.tool_choice = have_tools ? ToolChoice::Auto : ToolChoice::None;
  const ojson* tc = field(j, "tool_choice");
  if (!tc) return;
  if (tc->is_string()) {
    const std::string s = tc->get<std::string>();
    if (s == "none") r.tool_choice = ToolChoice::None;
    else if (s == "auto") r.tool_choice = have_tools ? ToolChoice::Auto : ToolChoice::None;
    else if (s == "required") r.tool_choice = ToolChoice::Required;
    else bad("tool_choice", fmt::format("'tool_choice' must be none, auto, required or a function object; got '{}'", s));
  } else if (tc->is_object()) {
    const ojson* fn = field(*tc, "function");
    const ojson* name = fn && fn->is_object() ? field(*fn, "name") : nullptr;
    if (!name || !name->is_string())
      bad("tool_choice", "'tool_choice' as an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
    r.tool_choice = ToolChoice::Named;
    r.tool_name = name->get<std::string>();
  } else {
    wrong_type("tool_choice", "a string or an object", *tc);
  }
  if ((r.tool_choice == ToolChoice::Required || r.tool_choice == ToolChoice::Named) && !have_tools)
    bad("tool_choice", "'tool_choice' requires a tool but 'tools' is empty");
  if (r.tool_choice == ToolChoice::Named) {
    bool found = false;
    for (const auto& t : r.tools) found = found || t["function"]["name"] == r.tool_name;
    if (!found) bad("tool_choice", fmt::format("'tool_choice' names the function '{}', which 'tools' does not declare", r.tool_name));
  }
}

}  // namespace

ApiRequest parse_chat_request(const std::string& body) {
  const ojson j = parse_body(body);
  ApiRequest r;
  r.chat = true;
  r.messages = parse_messages(j);
  parse_common(j, r);
  parse_tools(j, r);
  r.parallel_tool_calls = get_bool(j, "parallel_tool_calls", true);
  if (const ojson* lp = field(j, "logprobs")) {
    if (!lp->is_boolean()) wrong_type("logprobs", "a boolean", *lp);
    if (lp->get<bool>()) r.logprobs = 0;
  }
  if (auto top = get_int(j, "top_logprobs", 0, 20)) {
    if (r.logprobs < 0) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    r.logprobs = static_cast<int>(*top);
  }
  if (const ojson* v = field(j, "add_generation_prompt")) {
    if (!v->is_boolean()) wrong_type("add_generation_prompt", "a boolean", *v);
    r.add_generation_prompt = v->get<bool>();
  }
  r.continue_final_message = get_bool(j, "continue_final_message", false);
  if (r.continue_final_message && r.add_generation_prompt.value_or(false))
    bad("continue_final_message", "'continue_final_message' and 'add_generation_prompt' cannot both be true");
  if (const ojson* kw = field(j, "chat_template_kwargs")) {
    if (!kw->is_object()) wrong_type("chat_template_kwargs", "an object", *kw);
    r.chat_template_kwargs = *kw;
  }
  if (const ojson* v = field(j, "separate_reasoning")) {
    if (!v->is_boolean()) wrong_type("separate_reasoning", "a boolean", *v);
    r.separate_reasoning = v->get<bool>();
  }
  if (const ojson* rf = field(j, "response_format")) {
    if (!rf->is_object()) wrong_type("response_format", "an object", *rf);
    refuse_unless(rf->value("type", "") == "text", "response_format", "a response_format other than text");
  }
  return r;
}

ApiRequest parse_completion_request(const std::string& body) {
  const ojson j = parse_body(body);
  ApiRequest r;
  r.chat = false;
  r.max_tokens = 16;  // the completions API's documented default
  parse_common(j, r);
  r.echo = get_bool(j, "echo", false);
  if (auto lp = get_int(j, "logprobs", 0, 20)) r.logprobs = static_cast<int>(*lp);
  if (r.stream && r.echo && r.logprobs >= 0)
    refuse_unless(false, "logprobs", "streaming with both echo and logprobs");
  if (auto b = get_int(j, "best_of", 1, 128)) refuse_unless(*b == 1, "best_of", "best_of > 1");
  if (field(j, "suffix")) refuse_unless(false, "suffix", "suffix (fill-in-the-middle)");
  const ojson* p = field(j, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  const ojson* one = p;
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    refuse_unless(p->size() == 1, "prompt", "a batch of several prompts");
    one = &p->front();
  }
  if (one->is_string()) {
    r.prompt = one->get<std::string>();
    if (r.prompt.empty()) bad("prompt", "'prompt' must not be empty");
  } else if (one->is_array()) {
    std::vector<int> ids;
    for (const auto& v : *one) {
      if (!v.is_number_integer()) wrong_type("prompt", "a string, an array of token ids, or an array of one of those", v);
      // Checked as 64-bit values: get<int>() would truncate 2^40 to 0, a valid id.
      const bool fits = v.is_number_unsigned() ? v.get<unsigned long long>() <= static_cast<unsigned long long>(std::numeric_limits<int>::max())
                                               : v.get<long long>() >= 0 && v.get<long long>() <= std::numeric_limits<int>::max();
      if (!fits) bad("prompt", fmt::format("'prompt' token id {} is outside the vocabulary", v.dump()));
      ids.push_back(static_cast<int>(v.get<long long>()));
    }
    if (ids.empty()) bad("prompt", "'prompt' must not be empty");
    r.prompt_ids = std::move(ids);
  } else {
    wrong_type("prompt", "a string or an array of token ids", *p);
  }
  return r;
}

}  // namespace k2
