// Prompt preparation (chat template, forced tool-call prefixes, limits) and the consumer side of a
// running job: ids from the worker thread are queued, and poll() decodes and assembles them on the
// caller's thread, cancelling the job as soon as a stop sequence matches.
#include "server/completion_service.h"

#include <fmt/format.h>

#include <algorithm>

#include "server/api_error.h"
#include "server/chat_prompt.h"

namespace k2 {
namespace {

// Kimi numbers tool calls across the conversation: functions.NAME:IDX with IDX counting earlier calls.
int count_tool_calls(const nlohmann::ordered_json& messages) {
  int n = 0;
  for (const auto& m : messages)
    if (m.contains("tool_calls") && m["tool_calls"].is_array()) n += static_cast<int>(m["tool_calls"].size());
  return n;
}

}  // namespace

RunningRequest::RunningRequest(const Tokenizer& tokenizer, const std::set<int>& shown_specials,
                               PreparedRequest prepared)
    : tokenizer_(tokenizer),
      shown_specials_(shown_specials),
      prepared_(std::move(prepared)),
      decoder_(tokenizer, false),
      assembler_(prepared_.output) {
  usage_.prompt_tokens = static_cast<int>(prepared_.prompt.size());
}

void RunningRequest::cancel() {
  if (handle_) handle_->cancel();
}

LogprobEntry RunningRequest::entry(const TokenLogprobs& lp) const {
  auto alt = [&](int id, float logprob) {
    LogprobAlternative a;
    a.logprob = logprob;
    if (id >= 0 && id < tokenizer_.vocab_size()) {
      a.token = tokenizer_.id_to_piece(id);
      a.bytes = tokenizer_.token_bytes(id);
    }
    return a;
  };
  LogprobEntry e;
  e.chosen = alt(lp.token, lp.logprob);
  for (const auto& [id, v] : lp.top) e.top.push_back(alt(id, v));
  return e;
}

Progress RunningRequest::poll(std::chrono::milliseconds timeout) {
  Progress progress;
  if (finished_) {
    progress.done = true;
    return progress;
  }
  std::deque<int> ids;
  std::deque<TokenLogprobs> logprobs;
  bool done = false;
  {
    std::unique_lock lock(shared_->mutex);
    shared_->cv.wait_for(lock, timeout, [&] { return !shared_->ids.empty() || shared_->done; });
    ids.swap(shared_->ids);
    // One entry per id: on_logprobs runs just before on_token, so an entry may be here before its id.
    for (size_t i = 0; i < ids.size() && !shared_->logprobs.empty(); ++i) {
      logprobs.push_back(std::move(shared_->logprobs.front()));
      shared_->logprobs.pop_front();
    }
    done = shared_->done;
  }
  auto add = [&](OutputDelta d) { progress.delta.append(std::move(d)); };
  for (int id : ids) {
    if (assembler_.stopped()) break;  // ids computed after a stop sequence are not part of the answer
    ++usage_.completion_tokens;
    if (!logprobs.empty()) {
      progress.logprobs.push_back(entry(logprobs.front()));
      logprobs.pop_front();
    }
    // Ids past the tokenizer (embedding rows it does not name) and hidden specials produce no text.
    if (id < 0 || id >= tokenizer_.vocab_size()) continue;
    if (tokenizer_.is_special(id) && !shown_specials_.count(id)) continue;
    add(assembler_.push(decoder_.push(id)));
    if (assembler_.stopped()) cancel();
  }
  if (!done) return progress;
  finished_ = true;
  progress.done = true;
  const JobResult& r = shared_->result;  // written before `done` was set; no longer touched by the worker
  usage_.cached_tokens = r.cached_tokens;
  usage_.queue_seconds = r.queue_seconds;
  usage_.first_token_seconds = r.first_token_seconds;
  usage_.decode_seconds = r.decode_seconds;
  if (r.error) {
    progress.error = r.error;
    return progress;
  }
  if (prepared_.request.echo && prepared_.request.logprobs >= 0 && !prepared_.prompt.empty()) {
    LogprobEntry first = entry(TokenLogprobs{prepared_.prompt.front(), 0.0f, {}});
    first.has_logprob = false;
    prompt_logprobs_.push_back(std::move(first));
    for (const TokenLogprobs& lp : r.prompt_logprobs) prompt_logprobs_.push_back(entry(lp));
  }
  if (!assembler_.stopped()) add(assembler_.push(decoder_.flush()));
  add(assembler_.finish());
  progress.finish_reason = assembler_.stopped() ? "stop" : r.finish_reason;
  if (assembler_.tool_calls() > 0 && progress.finish_reason == "stop") progress.finish_reason = "tool_calls";
  return progress;
}

CompletionService::CompletionService(const Tokenizer& tokenizer, std::optional<ChatTemplate> chat_template,
                                     TokenGenerator& generator, ServiceOptions options)
    : tokenizer_(tokenizer), template_(std::move(chat_template)), generator_(generator), options_(std::move(options)) {
  for (ToolCallFormat f : {ToolCallFormat::Kimi, ToolCallFormat::DeepSeek}) {
    const ToolMarkers& m = tool_markers(f);
    std::vector<std::string> names = {"<think>", "</think>", m.call_begin, m.arg_begin, m.call_end};
    names.insert(names.end(), m.section_begin.begin(), m.section_begin.end());
    names.insert(names.end(), m.section_end.begin(), m.section_end.end());
    for (const std::string& name : names)
      if (auto id = tokenizer_.special_token_id(name)) chat_specials_.insert(*id);
  }
  if (template_) tool_format_ = tool_format_of_template(template_->source());
}

std::string CompletionService::render_chat(const ApiRequest& r, PreparedRequest& p) const {
  OutputOptions& output = p.output;
  if (!template_) throw ApiError(400, "this model folder has no chat template; use /v1/completions", "messages");
  ChatRenderOptions ro;
  const bool tools = r.tool_choice != ToolChoice::None;
  if (tools) ro.tools = r.tools;
  ro.add_generation_prompt = r.add_generation_prompt.value_or(!r.continue_final_message);
  ro.extra = merge_template_kwargs(options_.chat_template_kwargs, r.chat_template_kwargs);
  std::string text = template_->render(r.continue_final_message ? mark_final_message(r.messages) : r.messages, ro);
  if (r.continue_final_message) text = cut_at_final_message(text, r.messages);
  output.parse_reasoning = r.separate_reasoning.value_or(options_.separate_reasoning);
  output.thinking_open = prompt_opens_thinking(text);
  output.parse_tools = tools;
  output.tool_format = tool_format_;
  output.parallel_tool_calls = r.parallel_tool_calls;
  output.first_call_number = count_tool_calls(r.messages);
  // "required" with a single declared tool can only mean that tool: force it by name, as a named choice is.
  std::string forced = r.tool_choice == ToolChoice::Named ? r.tool_name : "";
  if (r.tool_choice == ToolChoice::Required && r.tools.size() == 1) forced = r.tools[0]["function"]["name"].get<std::string>();
  if (r.tool_choice == ToolChoice::Required || r.tool_choice == ToolChoice::Named) {
    // Start the answer inside a tool-call section, so the model can only continue with a call. A thinking
    // prompt first gets its block closed: the call is the answer.
    const ToolMarkers& m = tool_markers(tool_format_);
    std::string prefix = output.thinking_open ? "</think>" : "";
    prefix += m.section_begin[0] + m.call_begin;
    // Kimi's call header is the call id; DeepSeek's is the bare name.
    auto header = [&](const std::string& name) {
      return tool_format_ == ToolCallFormat::Kimi ? tool_call_id(tool_format_, name, output.first_call_number) : name;
    };
    if (!forced.empty()) {
      prefix += header(forced) + m.arg_begin;
    } else {
      // Several tools: the model picks one, but its first tokens are constrained to one of the declared
      // headers (sampler forced_choices), so the answer is a call of a declared function.
      for (const auto& t : r.tools)
        p.request_forced_choices.push_back(tokenizer_.encode(header(t["function"]["name"].get<std::string>()) + m.arg_begin, true));
    }
    output.thinking_open = false;
    output.forced_tool_prefix = prefix.substr(prefix.rfind(m.section_begin[0]));
    text += prefix;
  }
  return text;
}

PreparedRequest CompletionService::prepare(ApiRequest r) const {
  if (!r.model.empty() && r.model != options_.model_name &&
      std::find(options_.model_aliases.begin(), options_.model_aliases.end(), r.model) == options_.model_aliases.end())
    throw ApiError(404, fmt::format("The model '{}' does not exist; this server serves '{}'", r.model, options_.model_name),
                   "model", "model_not_found");
  PreparedRequest p;
  p.output.stop = r.stop;
  if (r.chat) {
    std::string text;
    try {
      text = render_chat(r, p);
    } catch (const ApiError&) {
      throw;
    } catch (const InputError& e) {
      throw ApiError(400, fmt::format("the chat template could not render these messages: {}", e.what()), "messages");
    }
    p.prompt = tokenizer_.encode(text, true);
    p.prompt_text = std::move(text);
  } else {
    p.output.parse_reasoning = false;
    if (r.prompt_ids) {
      for (int id : *r.prompt_ids)
        if (id < 0 || id >= tokenizer_.vocab_size())
          throw ApiError(400, fmt::format("prompt token id {} is outside the vocabulary [0, {})", id, tokenizer_.vocab_size()), "prompt");
      p.prompt = *r.prompt_ids;
      if (r.echo) p.echo = tokenizer_.decode(p.prompt, true);
    } else {
      p.prompt = tokenizer_.encode(r.prompt, true);
      if (r.echo) p.echo = r.prompt;
    }
  }
  const int n = static_cast<int>(p.prompt.size());
  if (n == 0) throw ApiError(400, "the prompt encodes to zero tokens", r.chat ? "messages" : "prompt");
  if (n >= options_.context)
    throw ApiError(400, fmt::format("This model's maximum context length is {} tokens. However, your prompt is {} tokens. "
                                    "Please reduce the length of the {}.", options_.context, n, r.chat ? "messages" : "prompt"),
                   r.chat ? "messages" : "prompt", "context_length_exceeded");
  if (r.max_tokens) {
    if (n + *r.max_tokens > options_.context)
      throw ApiError(400, fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens "
                                      "({} in the {}, {} in the completion). Please reduce the length of the {} or completion.",
                                      options_.context, n + static_cast<long long>(*r.max_tokens), n,
                                      r.chat ? "messages" : "prompt", *r.max_tokens, r.chat ? "messages" : "prompt"),
                     "max_tokens", "context_length_exceeded");
    p.max_tokens = *r.max_tokens;
  } else {
    p.max_tokens = std::min(options_.default_max_tokens, options_.context - n);
  }
  p.request = std::move(r);
  p.request.sampling.logprobs = p.request.logprobs;
  p.request.sampling.forced_choices = std::move(p.request_forced_choices);
  return p;
}

std::shared_ptr<RunningRequest> CompletionService::start(PreparedRequest prepared) {
  const bool chat = prepared.request.chat;
  auto running = std::make_shared<RunningRequest>(tokenizer_, chat ? chat_specials_ : no_specials_, std::move(prepared));
  GenerationJob job;
  job.prompt = running->prepared_.prompt;
  job.sampling = running->prepared_.request.sampling;
  job.max_tokens = running->prepared_.max_tokens;
  job.stop_tokens = options_.stop_tokens;
  job.prompt_logprobs = running->prepared_.request.echo && running->prepared_.request.logprobs >= 0;
  if (running->prepared_.request.logprobs >= 0) {
    std::weak_ptr<RunningRequest::Shared> w = running->shared_;
    job.on_logprobs = [w](const TokenLogprobs& lp) {
      if (auto s = w.lock()) {
        std::lock_guard lock(s->mutex);
        s->logprobs.push_back(lp);
      }
    };
  }
  std::weak_ptr<RunningRequest::Shared> weak = running->shared_;
  job.on_token = [weak](int id) {
    auto s = weak.lock();
    if (!s) return false;  // nobody is listening any more
    {
      std::lock_guard lock(s->mutex);
      s->ids.push_back(id);
    }
    s->cv.notify_one();
    return true;
  };
  job.on_done = [shared = running->shared_](const JobResult& result) {
    {
      std::lock_guard lock(shared->mutex);
      shared->result = result;
      shared->done = true;
    }
    shared->cv.notify_one();
  };
  running->handle_ = generator_.submit(std::move(job));
  return running;
}

}  // namespace k2
