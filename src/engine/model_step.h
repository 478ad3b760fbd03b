// How one step of the generation loop is computed, as an interface: LocalStep runs the whole model in this
// process; the pipeline computes the same calls through its stages (pipeline/pipeline_step.h). A step owns
// each sequence's KV cache and sampler (with its seeded random stream), never the stop rules or callbacks,
// which belong to the one loop (engine/scheduler.h).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "engine/sampler.h"

namespace k2 {

// One row of a batched decode step: feed `token` to sequence `seq`, sample the token after it. A chained row
// feeds instead the id the sequence's previous launched decode samples, before that id is read back (only for
// a sequence the step chains(), see ModelStep::launch).
struct DecodeRow {
  int seq = 0;
  int token = 0;
  bool chained = false;
};

// A batched decode that has been started; read() waits for it and returns the sampled ids in row order.
class LaunchedDecode {
 public:
  virtual ~LaunchedDecode() = default;
  virtual std::vector<int> read() = 0;
};

// A decode whose ids were known when it was launched (a step that cannot compute in the background).
class FinishedDecode : public LaunchedDecode {
 public:
  explicit FinishedDecode(std::vector<int> ids) : ids_(std::move(ids)) {}
  std::vector<int> read() override { return std::move(ids_); }

 private:
  std::vector<int> ids_;
};

struct SequenceEnd {
  std::vector<int> held;  // the ids the sequence's cache holds (length(seq) of them)
  bool keep = true;       // the cache may be kept for reuse (false after a failure)
  bool cancelled = false;
  int last_emitted = -1;  // the final emitted id that was never fed back (-1: none)
};

class ModelStep {
 public:
  virtual ~ModelStep() = default;

  // A new sequence `seq` with this prompt and sampling. Returns how many leading prompt tokens its cache
  // already holds (prompt reuse), always < prompt.size() so that the last prompt token still runs.
  virtual int begin(int seq, const std::vector<int>& prompt, const SamplingParams& sampling) = 0;
  // Appends `ids` to the sequence's cache (prompt tokens; no logits are computed).
  virtual void prefill(int seq, const std::vector<int>& ids) = 0;
  // One batched forward over every row; returns the id sampled after each row, in row order. Each row
  // gets exactly the computation it would get alone, apart from the rounding of the batched matmuls.
  virtual std::vector<int> decode(const std::vector<DecodeRow>& rows) = 0;
  // decode(), started and returned before its ids are read back where the step can compute in the background,
  // so that the loop builds the next step while this one runs (as mlx-lm's generate_step does with
  // async_eval). Rows may be chained to the previous launch of their sequence. The default runs decode().
  virtual std::unique_ptr<LaunchedDecode> launch(const std::vector<DecodeRow>& rows) {
    return std::make_unique<FinishedDecode>(decode(rows));
  }
  // How many decode launches of disjoint groups of sequences the loop keeps in flight at once (a pipeline: one
  // per stage, so that every stage works on one group while the others work on theirs). 1: every running
  // sequence decodes in each step, in one launch.
  virtual int micro_batches() const { return 1; }
  // Whether the sequence's next row may be chained: its sampler needs no fed id on the host (no repetition
  // penalty, no forced choice still open). False for a step that does not chain at all.
  virtual bool chains(int /*seq*/) const { return false; }
  // With sampling.logprobs >= 0: the log-probabilities of the sequence's last sampled id (none otherwise).
  virtual std::optional<TokenLogprobs> take_logprobs(int /*seq*/) { return std::nullopt; }
  // Entry i scores prompt[i + 1] given the tokens before it, with `top_n` alternatives (prompt_logprobs).
  virtual std::vector<TokenLogprobs> score_prompt(const std::vector<int>& prompt, int top_n) = 0;
  // The sequence is finished (see SequenceEnd).
  virtual void end(int seq, SequenceEnd how) = 0;

  virtual int length(int seq) const = 0;  // positions in the sequence's cache
  virtual int max_positions() const = 0;  // the model's context
  virtual int vocab_size() const = 0;
  // Tokens per prefill chunk for a prompt of `prompt_tokens` (same cut on every path, see prefill_chunk.h).
  virtual int prefill_chunk(int prompt_tokens) const = 0;

  virtual size_t cache_entries() const { return 0; }  // prompts kept for reuse
  virtual size_t cache_bytes() const { return 0; }
  virtual void finish() {}  // after the last step (a pipeline tells the other ranks to leave)
};

}  // namespace k2
