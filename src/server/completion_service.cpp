// Prompt preparation (chat template, forced tool-call prefixes, limits) and the consumer side of a
// running job: ids from the worker thread are queued, and poll() decodes and assembles them on the
// caller's thread, cancelling the job as soon as a stop sequence matches.
#include "server/completion_service.h"

#include <fmt/format.h>

#include <algorithm>

#include "server/api_error.h"

namespace k2 {
namespace {

constexpr const char* kSectionBegin = "<|tool_calls_section_begin|>";
constexpr const char* kCallBegin = "<|tool_call_begin|>";
constexpr const char* kArgBegin = "<|tool_call_argument_begin|>";

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

Progress RunningRequest::poll(std::chrono::milliseconds timeout) {
  Progress progress;
  if (finished_) {
    progress.done = true;
    return progress;
  }
  std::deque<int> ids;
  bool done = false;
  {
    std::unique_lock lock(shared_->mutex);
    shared_->cv.wait_for(lock, timeout, [&] { return !shared_->ids.empty() || shared_->done; });
    ids.swap(shared_->ids);
    done = shared_->done;
  }
  auto add = [&](OutputDelta d) {
    progress.delta.reasoning += d.reasoning;
    progress.delta.content += d.content;
    for (auto& c : d.tool_calls) progress.delta.tool_calls.push_back(std::move(c));
  };
  for (int id : ids) {
    if (assembler_.stopped()) break;  // ids computed after a stop sequence are not part of the answer
    ++usage_.completion_tokens;
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
  if (!assembler_.stopped()) add(assembler_.push(decoder_.flush()));
  add(assembler_.finish());
  progress.finish_reason = assembler_.stopped() ? "stop" : r.finish_reason;
  if (!progress.delta.tool_calls.empty() && progress.finish_reason == "stop") progress.finish_reason = "tool_calls";
  return progress;
}

CompletionService::CompletionService(const Tokenizer& tokenizer, std::optional<ChatTemplate> chat_template,
                                     TokenGenerator& generator, ServiceOptions options)
    : tokenizer_(tokenizer), template_(std::move(chat_template)), generator_(generator), options_(std::move(options)) {
  for (const char* name : {"<think>", "</think>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
                           "<|tool_call_section_begin|>", "<|tool_call_section_end|>", "<|tool_call_begin|>",
                           "<|tool_call_argument_begin|>", "<|tool_call_end|>"})
    if (auto id = tokenizer_.special_token_id(name)) chat_specials_.insert(*id);
}

std::string CompletionService::render_chat(const ApiRequest& r, OutputOptions& output) const {
  if (!template_) throw ApiError(400, "this model folder has no chat template; use /v1/completions", "messages");
  ChatRenderOptions ro;
  const bool tools = r.tool_choice != ToolChoice::None;
  if (tools) ro.tools = r.tools;
  std::string text = template_->render(r.messages, ro);
  output.parse_tools = tools;
  if (r.tool_choice == ToolChoice::Required || r.tool_choice == ToolChoice::Named) {
    // Start the answer inside a tool-call section, so the model can only continue with a call.
    for (const char* marker : {kSectionBegin, kCallBegin, kArgBegin})
      if (!tokenizer_.special_token_id(marker))
        throw ApiError(400, fmt::format("tool_choice '{}' needs the Kimi tool-call tokens, which this model's tokenizer lacks",
                                        r.tool_choice == ToolChoice::Named ? r.tool_name : "required"),
                       "tool_choice");
    std::string prefix = kSectionBegin;
    if (r.tool_choice == ToolChoice::Named) {
      output.forced_tool_name = r.tool_name;
      output.forced_tool_id = fmt::format("functions.{}:{}", r.tool_name, count_tool_calls(r.messages));
      prefix += fmt::format("{}{}{}", kCallBegin, output.forced_tool_id, kArgBegin);
    }
    output.forced_tool_prefix = prefix;
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
      text = render_chat(r, p.output);
    } catch (const ApiError&) {
      throw;
    } catch (const InputError& e) {
      throw ApiError(400, fmt::format("the chat template could not render these messages: {}", e.what()), "messages");
    }
    p.prompt = tokenizer_.encode(text, true);
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
