// The generation step computed through a layer pipeline. Rank 0's PipelineStep is the ModelStep the one
// generation loop (engine/scheduler.h) drives, for `pipeline` and `serve` alike: prefill chunks and batched
// decode rows go through the stages as hidden states, and the last rank samples with each sequence's own
// sampler. The other ranks run follow() until rank 0 shuts the job down. Each rank keeps one KV cache per slot.
// Several decode launches may be in flight (micro-batches of different sequences), so that the stages overlap.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "engine/model_step.h"
#include "engine/prefill_chunk.h"
#include "pipeline/stage_link.h"

namespace k2 {

struct PipelineStepOptions {
  PrefillChunking prefill;  // how prompts are cut into chunks (default: sized to memory)
  // Send the next prefill chunk while later stages still work on the previous one. Off: rank 0 waits for the
  // last stage after each chunk (the sequential baseline the bench compares).
  bool overlap = true;
  bool reuse_prompts = true;  // a new sequence takes the free slot whose cache shares the longest prefix
  int slots = 4;              // sequences in flight at most (the scheduler's parallel)
  // Decode micro-batches the loop keeps in flight (ModelStep::micro_batches); 0: one per rank.
  int micro_batches = 0;
};

// Rank 0. A failure after a sequence began leaves the ranks out of step: the step reports it through `on_lost`
// (once) and fails every later call.
class PipelineStep : public ModelStep {
 public:
  PipelineStep(StageLink& link, PipelineStepOptions options, std::function<void(const std::exception&)> on_lost = {});

  int begin(int seq, const std::vector<int>& prompt, const SamplingParams& sampling) override;
  void prefill(int seq, const std::vector<int>& ids) override;
  std::vector<int> decode(const std::vector<DecodeRow>& rows) override;
  // Runs rank 0's layers and sends the rows on; the ids come back when the returned decode is read. Launches
  // are answered in order, so reading one first reads the older ones still unread (and keeps their ids).
  std::unique_ptr<LaunchedDecode> launch(const std::vector<DecodeRow>& rows) override;
  int micro_batches() const override;
  std::vector<TokenLogprobs> score_prompt(const std::vector<int>& prompt, int top_n) override;
  void end(int seq, SequenceEnd how) override;

  int length(int seq) const override;
  int max_positions() const override { return link_.stage().config().max_position_embeddings; }
  int vocab_size() const override { return link_.stage().config().vocab_size; }
  int prefill_chunk(int prompt_tokens) const override;
  size_t cache_entries() const override;
  size_t cache_bytes() const override;
  void finish() override;  // tells the other ranks to leave (kShutdown), unless the pipeline is broken

 private:
  struct Slot {
    KvCache cache;
    std::vector<int> held;  // the ids every rank's cache of this slot holds
    int seq = -1;           // the running sequence, -1 when free
  };
  Slot& slot_of(int seq);
  const Slot& slot_of(int seq) const;
  template <class F>
  auto guarded(F&& body);
  struct Answer {  // the ids the last rank sends back for one launch
    int rows = 0;
    std::optional<std::vector<int>> ids;
  };
  // Receives the answers of the launches up to this one (all: null); read_until also marks a failure as lost.
  void receive_until(const Answer* answer);
  void read_until(const Answer* answer);
  friend class PipelineDecode;

  StageLink& link_;
  PipelineStepOptions options_;
  std::function<void(const std::exception&)> on_lost_;
  std::vector<Slot> slots_;
  std::deque<std::shared_ptr<Answer>> unanswered_;  // launched decodes whose ids are not received yet, oldest first
  bool broken_ = false;
};

// Rank 0 of a logits job: `ids` through the stages in prefill chunks; the last rank's follow() returns the
// logits ([n, vocab] with all_positions, else [vocab], float32). Ends the job (kShutdown).
void pipeline_logits(StageLink& link, const std::vector<int>& ids, bool all_positions, const PipelineStepOptions& options);

struct FollowStats {
  int requests = 0;
  int cancelled = 0;
  std::vector<int> last_tokens;            // the ids the most recently finished sequence emitted
  std::optional<mlx::core::array> logits;  // last rank of a logits job
};

// Ranks > 0: runs this rank's stage for every message rank 0 sends, samples on the last rank, and returns when
// rank 0 sends kShutdown. Throws Error when the link breaks or the protocol is violated.
FollowStats follow(StageLink& link);

}  // namespace k2
