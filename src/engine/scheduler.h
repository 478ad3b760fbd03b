// The one generation loop. Sequences are admitted into a running batch; each step() prefills one chunk of one
// waiting prompt (the one with the fewest tokens left, so a long prompt does not stall short ones), or prompt
// tokens up to a per-step token budget, and then decodes every running
// sequence in one batched ModelStep::decode, retiring each independently when its stop rules say so. A step's
// decode is launched before the previous one's ids are read (chained rows, where the ModelStep chains), so that
// building a step overlaps computing the one before. Used directly by the command line (run_one) and by the
// GenerationWorker thread for the server and the pipeline. Where the step takes micro-batches (a pipeline), each
// step instead reads the oldest of the launches in flight and launches the sequences not in flight as one
// micro-batch, so that the stages work on different groups of sequences at once.
#pragma once

#include <deque>
#include <exception>
#include <list>
#include <memory>
#include <optional>
#include <vector>

#include "engine/model_step.h"
#include "engine/sequence.h"
#include "engine/worker.h"

namespace k2 {

class Scheduler {
 public:
  // step_tokens > 0: a budget of tokens per step shared by the decode rows and the prefill chunks (a step
  // prefills at most step_tokens minus its decode rows, at least one token, over the waiting prompts fewest-left
  // first, until one of them is ready to decode), so that a step, and with it the wait of a request that arrives during a long
  // prefill, stays short. 0: each step prefills one chunk (ModelStep::prefill_chunk) of one prompt.
  Scheduler(ModelStep& step, int parallel, int step_tokens = 0);

  // Admits a job; a bad one (empty prompt, ids outside the vocabulary, a prompt over the context, bad
  // sampling) ends at once through on_done with an InputError.
  void add(GenerationJob job, std::shared_ptr<JobHandle> handle, double queue_seconds = 0.0);
  bool has_room() const { return static_cast<int>(running_.size()) < parallel_; }
  bool idle() const { return running_.empty(); }
  size_t running() const { return running_.size(); }
  int parallel() const { return parallel_; }

  // One prefill chunk and one batched decode step (whose ids may be read in the next step). An InputError during a prefill chunk fails that sequence
  // only; any other failure of the step propagates (the caller then calls fail_all).
  void step();
  // Every running sequence ends as cancelled at the next step.
  void cancel_all();
  // Ends every running sequence with `error` (a broken step: the batch cannot go on).
  void fail_all(std::exception_ptr error);

 private:
  // A launched decode and the sequence of each row (null once that sequence retired: its id is dropped).
  struct InFlight {
    std::unique_ptr<LaunchedDecode> decode;
    std::vector<Sequence*> rows;
  };
  void retire(Sequence& s, bool keep);
  void prefill();
  int prefill_one(int budget);  // tokens prefilled (-1: no prompt waits); budget < 0: a whole chunk
  bool may_chain(const InFlight& previous) const;
  std::optional<InFlight> launch_decode(const std::optional<InFlight>& previous);
  void step_chained();       // one launch of every decoding sequence per step (chained to the previous one)
  void step_micro(int micro);  // micro-batches of the sequences not in flight
  bool in_flight(const Sequence* s) const;
  void read(InFlight& launched);  // applies the stop rules to its ids

  ModelStep& step_;
  int parallel_;
  int step_tokens_;
  int next_id_ = 0;
  long steps_ = 0;
  std::list<Sequence> running_;
  std::deque<InFlight> in_flight_;  // launched decodes not read yet, oldest first (at most one when chained)
};

// Runs one job to completion on `step` and returns its result; rethrows the job's error.
JobResult run_one(ModelStep& step, GenerationJob job);

}  // namespace k2
