// Between the HTTP layer and the generation worker: renders chat prompts, tokenizes, checks token
// limits, submits jobs, and turns the ids that come back into text deltas (reasoning / content / tool
// calls) with stop sequences applied. Knows requests and tokens, not HTTP and not tensors.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/worker.h"
#include "server/openai_request.h"
#include "server/output_stream.h"
#include "text/chat_template.h"
#include "text/streaming_decoder.h"
#include "text/tokenizer.h"

namespace k2 {

struct ServiceOptions {
  std::string model_name;                  // the id /v1/models reports
  std::vector<std::string> model_aliases;  // other names accepted in a request's "model"
  int context = 0;                         // prompt + completion tokens allowed per request
  int default_max_tokens = 4096;           // completion limit when a chat request sets none
  std::vector<int> stop_tokens;            // end-of-turn ids (not shown)
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();  // defaults under each request's
  bool separate_reasoning = true;          // thinking goes to reasoning_content (false: left inline in content)
};

struct PreparedRequest {
  ApiRequest request;
  std::vector<int> prompt;
  int max_tokens = 0;
  OutputOptions output;
  std::string echo;  // completions with echo: the prompt text
  std::string prompt_text;  // chat: the rendered prompt (what /apply-template shows)
  std::vector<std::vector<int>> request_forced_choices;  // becomes request.sampling.forced_choices
};

// A token's log-probability as the wire formats show it: its text, raw bytes and the alternatives.
struct LogprobAlternative {
  std::string token;  // the piece (special tokens by name; broken UTF-8 as U+FFFD)
  std::string bytes;  // the token's raw bytes
  float logprob = 0.0f;
};
struct LogprobEntry {
  LogprobAlternative chosen;
  bool has_logprob = true;  // false for a prompt's first token (nothing before it to score it)
  std::vector<LogprobAlternative> top;
};

// What poll() saw since the previous call.
struct Progress {
  OutputDelta delta;
  std::vector<LogprobEntry> logprobs;  // one per generated token in this update (when logprobs were asked)
  bool done = false;
  std::string finish_reason;  // when done: stop, length, tool_calls, cancelled
  std::exception_ptr error;   // when done and the job failed
};

struct UsageCounts {
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int completion_tokens = 0;
  double queue_seconds = 0.0;
  double first_token_seconds = 0.0;  // from the start of the job
  double decode_seconds = 0.0;
};

class RunningRequest {
 public:
  RunningRequest(const Tokenizer& tokenizer, const std::set<int>& shown_specials, PreparedRequest prepared);
  // Waits up to `timeout` for output or the end; returns what arrived (possibly nothing).
  Progress poll(std::chrono::milliseconds timeout);
  void cancel();
  const UsageCounts& usage() const { return usage_; }
  const PreparedRequest& prepared() const { return prepared_; }
  // After the end, with echo and logprobs: the prompt's tokens, scored.
  const std::vector<LogprobEntry>& prompt_logprobs() const { return prompt_logprobs_; }
  // After the end: the stop sequence that cut the answer, if one did.
  const std::string& matched_stop() const { return assembler_.matched_stop(); }

 private:
  friend class CompletionService;
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<int> ids;
    std::deque<TokenLogprobs> logprobs;
    bool done = false;
    JobResult result;
  };
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::shared_ptr<JobHandle> handle_;
  const Tokenizer& tokenizer_;
  const std::set<int>& shown_specials_;
  PreparedRequest prepared_;
  StreamingDecoder decoder_;
  OutputAssembler assembler_;
  LogprobEntry entry(const TokenLogprobs& lp) const;
  UsageCounts usage_;
  std::vector<LogprobEntry> prompt_logprobs_;
  bool finished_ = false;
};

class CompletionService {
 public:
  // chat_template may be empty: chat requests are then refused (completions still work).
  CompletionService(const Tokenizer& tokenizer, std::optional<ChatTemplate> chat_template, TokenGenerator& generator,
                    ServiceOptions options);

  // Checks the model name, renders and tokenizes the prompt, resolves token limits. Throws ApiError.
  PreparedRequest prepare(ApiRequest request) const;
  // Queues the job; throws BusyError when the queue is full.
  std::shared_ptr<RunningRequest> start(PreparedRequest prepared);

  const ServiceOptions& options() const { return options_; }
  WorkerStatus status() const { return generator_.status(); }

 private:
  std::string render_chat(const ApiRequest& r, PreparedRequest& p) const;

  const Tokenizer& tokenizer_;
  std::optional<ChatTemplate> template_;
  TokenGenerator& generator_;
  ServiceOptions options_;
  ToolCallFormat tool_format_ = ToolCallFormat::Kimi;  // the syntax the chat template writes calls in
  std::set<int> chat_specials_;  // special ids decoded as text for chat (reasoning / tool markers)
  std::set<int> no_specials_;
};

}  // namespace k2
