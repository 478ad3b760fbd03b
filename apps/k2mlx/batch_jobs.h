// `--batch FILE` of generate and pipeline: many prompts generated together by the engine's loop (continuous
// batching, up to --parallel at once, the rest admitted as places free up). The file holds one JSON object per
// line; the results are written as one JSON object per line, in input order.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/model_step.h"
#include "engine/worker.h"
#include "text_io.h"

namespace k2::cli {

// One input line: {"ids": [..]} or {"prompt": "text"}, and optionally "max_tokens", "temperature", "top_k",
// "top_p", "min_p", "seed", "stop_tokens" (replaces the model's) and "cancel_after" (the caller cancels the
// sequence after that many tokens, as a client that goes away).
struct BatchItem {
  GenerationJob job;
  int cancel_after = -1;
};

// Reads `path` ("-" = stdin); fields a line leaves out come from `defaults`. Throws InputError naming the line.
std::vector<BatchItem> read_batch(const std::string& path, const BatchItem& defaults, const TextModel* text);

// Runs every item on `step`, `parallel` at a time; results in input order.
// `step_tokens`: the loop's per-step token budget (engine/scheduler.h; 0 = none).
std::vector<JobResult> run_batch(ModelStep& step, int parallel, std::vector<BatchItem> items, int step_tokens = 0);

// One JSON line per result: tokens, finish_reason, prompt_tokens, cached_tokens, first_token_seconds,
// decode_seconds; "error" instead when the job failed.
void write_batch(const std::string& path, const std::vector<JobResult>& results);

}  // namespace k2::cli
