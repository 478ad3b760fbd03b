// The generation loop: admission checks, chunked prefill (fewest tokens left first), the batched decode step and
// retirement (the cache's held ids go back to the step for prompt reuse). Allocator cache is released every
// 256 decode steps, as the single-sequence loop did.
#include "engine/scheduler.h"

#include <algorithm>

#include <fmt/format.h>

#include "mlx/mlx.h"

namespace k2 {

Scheduler::Scheduler(ModelStep& step, int parallel) : step_(step), parallel_(parallel) {
  if (parallel < 1) throw InputError(fmt::format("the number of parallel sequences must be at least 1, got {}", parallel));
}

void Scheduler::add(GenerationJob job, std::shared_ptr<JobHandle> handle, double queue_seconds) {
  Sequence& s = running_.emplace_back(next_id_++, std::move(job), std::move(handle), queue_seconds);
  try {
    const std::vector<int>& prompt = s.prompt();
    if (prompt.empty()) throw InputError("the prompt is empty: at least one token is needed");
    const int vocab = step_.vocab_size();
    for (int id : prompt)
      if (id < 0 || id >= vocab) throw InputError(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
    if (static_cast<int>(prompt.size()) > step_.max_positions())
      throw InputError(fmt::format("{} tokens exceed the model's context of {} (max_position_embeddings)",
                                   prompt.size(), step_.max_positions()));
    s.job().sampling.validate();
    if (s.job().max_tokens < 0) throw InputError(fmt::format("max_tokens must be >= 0, got {}", s.job().max_tokens));
    // Scoring the prompt is a request of its own (echo with max_tokens 0 only scores).
    if (s.job().prompt_logprobs && prompt.size() > 1 && !s.cancelled())
      s.result().prompt_logprobs = step_.score_prompt(prompt, std::max(0, s.job().sampling.logprobs));
    if (s.job().max_tokens == 0 || s.cancelled()) {
      s.finish(s.cancelled() ? "cancelled" : "length");
    } else {
      const int reused = step_.begin(s.id(), prompt, s.job().sampling);
      s.result().cached_tokens = reused;
      s.set_prefilled(reused);
      return;
    }
  } catch (...) {
    s.fail(std::current_exception());
  }
  s.done();
  running_.pop_back();
}

void Scheduler::retire(Sequence& s, bool keep) {
  try {
    step_.end(s.id(), SequenceEnd{s.held(step_.length(s.id())), keep, s.result().finish_reason == "cancelled",
                                  s.last_unfed()});
  } catch (...) {
    if (!s.finished()) s.fail(std::current_exception());
  }
  s.done();
}

void Scheduler::step() {
  // Cancelled sequences leave before any more work is spent on them.
  for (Sequence& s : running_)
    if (s.cancelled()) s.finish("cancelled");
  prefill_one();
  decode_all();
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->finished()) {
      retire(*it, !it->result().error);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void Scheduler::prefill_one() {
  // The prompt with the fewest tokens left to prefill (the earliest admitted on a tie): a short request that
  // arrives during a long prefill waits for one chunk of it at most, and the long one continues afterwards.
  Sequence* pick = nullptr;
  int pick_left = 0;
  for (Sequence& s : running_) {
    if (s.finished() || s.decoding()) continue;
    const int left = static_cast<int>(s.prompt().size()) - 1 - s.prefilled();
    if (!pick || left < pick_left) {
      pick = &s;
      pick_left = left;
    }
  }
  if (!pick) return;
  const std::vector<int>& prompt = pick->prompt();
  const int n = static_cast<int>(prompt.size());
  const int from = pick->prefilled();
  const int to = std::min(from + step_.prefill_chunk(n), n - 1);
  try {
    step_.prefill(pick->id(), std::vector<int>(prompt.begin() + from, prompt.begin() + to));
  } catch (const InputError&) {
    pick->fail(std::current_exception());
    return;
  }
  pick->set_prefilled(to);
}

void Scheduler::decode_all() {
  std::vector<DecodeRow> rows;
  std::vector<Sequence*> seqs;
  for (Sequence& s : running_) {
    if (!s.decoding()) continue;
    if (step_.length(s.id()) >= step_.max_positions()) {  // the context is full
      s.finish("length");
      continue;
    }
    rows.push_back({s.id(), s.next_input()});
    seqs.push_back(&s);
  }
  if (rows.empty()) return;
  const std::vector<int> sampled = step_.decode(rows);
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i]->fed();
    seqs[i]->accept(sampled[i], step_.take_logprobs(seqs[i]->id()));
  }
  if (++steps_ % 256 == 0) mlx::core::clear_cache();
}

void Scheduler::cancel_all() {
  for (Sequence& s : running_) s.finish("cancelled");
}

void Scheduler::fail_all(std::exception_ptr error) {
  for (Sequence& s : running_) {
    s.fail(error);
    retire(s, false);
  }
  running_.clear();
}

JobResult run_one(ModelStep& step, GenerationJob job) {
  JobResult out;
  bool done = false;
  auto caller_done = std::move(job.on_done);
  job.on_done = [&](const JobResult& r) {
    out = r;
    done = true;
    if (caller_done) caller_done(r);
  };
  Scheduler scheduler(step, 1);
  scheduler.add(std::move(job), std::make_shared<JobHandle>());
  try {
    while (!scheduler.idle()) scheduler.step();
  } catch (...) {
    scheduler.fail_all(std::current_exception());
  }
  if (!done) throw Error("engine: a job ended without a result");
  if (out.error) std::rethrow_exception(out.error);
  return out;
}

}  // namespace k2
