// The generation loop: admission checks, chunked prefill (fewest tokens left first), the batched decode step
// (chained launches, or micro-batches in flight) and retirement (the cache's held ids go back to the step for
// prompt reuse). Allocator cache is released every 256 decode steps, as mlx-lm's generate_step does.
#include "engine/scheduler.h"

#include <algorithm>

#include <fmt/format.h>

#include "mlx/mlx.h"

namespace k2 {

Scheduler::Scheduler(ModelStep& step, int parallel, int step_tokens)
    : step_(step), parallel_(parallel), step_tokens_(step_tokens) {
  if (parallel < 1) throw InputError(fmt::format("the number of parallel sequences must be at least 1, got {}", parallel));
  if (step_tokens < 0) throw InputError(fmt::format("the tokens per step must be >= 0 (0 = no budget), got {}", step_tokens));
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
  for (InFlight& f : in_flight_)  // a row launched on a guess that the sequence goes on: its id is dropped
    std::replace(f.rows.begin(), f.rows.end(), &s, static_cast<Sequence*>(nullptr));
  try {
    step_.end(s.id(), SequenceEnd{s.held(step_.length(s.id())), keep, s.result().finish_reason == "cancelled",
                                  s.last_unfed()});
  } catch (...) {
    if (!s.finished()) s.fail(std::current_exception());
  }
  s.done();
}

void Scheduler::step() {
  // Cancelled sequences leave before any more work is spent on them (an id of theirs in flight is dropped).
  for (Sequence& s : running_)
    if (s.cancelled()) s.finish("cancelled");
  prefill();
  const int micro = step_.micro_batches();
  if (micro > 1)
    step_micro(micro);
  else
    step_chained();
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->finished()) {
      retire(*it, !it->result().error);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  // Nobody waits for a launched decode any more (every row's sequence retired): finish it now, so that the
  // step leaves nothing behind when the loop goes idle.
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (std::all_of(it->rows.begin(), it->rows.end(), [](Sequence* s) { return !s; })) {
      it->decode->read();
      it = in_flight_.erase(it);
    } else {
      ++it;
    }
  }
}

void Scheduler::step_chained() {
  // Launch this step's decode from the previous step's ids while they may still be computing, then read those:
  // the host builds step t + 1 while the device computes step t. Where a sequence cannot chain, read first.
  std::optional<InFlight> previous;
  if (!in_flight_.empty()) {
    previous = std::move(in_flight_.front());
    in_flight_.clear();
  }
  if (previous && !may_chain(*previous)) {
    read(*previous);
    previous.reset();
  }
  if (std::optional<InFlight> launched = launch_decode(previous)) in_flight_.push_back(std::move(*launched));
  if (previous) read(*previous);
}

bool Scheduler::in_flight(const Sequence* s) const {
  for (const InFlight& f : in_flight_)
    if (std::find(f.rows.begin(), f.rows.end(), s) != f.rows.end()) return true;
  return false;
}

void Scheduler::step_micro(int micro) {
  // A sequence's next row needs the id its launch in flight samples, so the rows of one step are the sequences
  // not in flight; a step reads the oldest launch when `micro` are in flight or none is left to launch. With
  // two sequences on two stages: stage 0 computes A's row while stage 1 computes B's, and then the other way.
  auto free_rows = [&] {
    int n = 0;
    for (const Sequence& s : running_) n += s.decoding() && !in_flight(&s) ? 1 : 0;
    return n;
  };
  while (!in_flight_.empty() && (static_cast<int>(in_flight_.size()) >= micro || free_rows() == 0)) {
    read(in_flight_.front());
    in_flight_.pop_front();
  }
  int decoding = 0;
  for (const Sequence& s : running_) decoding += s.decoding() ? 1 : 0;
  const int cap = (decoding + micro - 1) / micro;  // an even share of the decoding sequences per micro-batch
  std::vector<DecodeRow> rows;
  InFlight out;
  for (Sequence& s : running_) {
    if (static_cast<int>(rows.size()) >= cap) break;
    if (!s.decoding() || in_flight(&s)) continue;
    if (step_.length(s.id()) >= step_.max_positions()) {  // the context is full
      s.finish("length");
      continue;
    }
    rows.push_back({s.id(), s.next_input(), false});
    out.rows.push_back(&s);
  }
  if (rows.empty()) return;
  out.decode = step_.launch(rows);
  in_flight_.push_back(std::move(out));
  if (++steps_ % 256 == 0) mlx::core::clear_cache();
}

void Scheduler::prefill() {
  if (step_tokens_ == 0) {
    prefill_one(-1);
    return;
  }
  // The decode rows of this step come out of the budget first: a step costs about its token count.
  int rows = 0;
  for (const Sequence& s : running_) rows += s.decoding() ? 1 : 0;
  // A prompt whose prefill completes ends the step's prefill, so that its first token is not held back by
  // another prompt's chunk (the time to first token of a short request arriving during a long prefill).
  const size_t decoding_before = static_cast<size_t>(rows);
  for (int budget = std::max(1, step_tokens_ - rows); budget > 0;) {
    const int used = prefill_one(budget);
    if (used < 0) return;
    budget -= used;
    size_t decoding = 0;
    for (const Sequence& s : running_) decoding += s.decoding() ? 1 : 0;
    if (decoding > decoding_before) return;
  }
}

int Scheduler::prefill_one(int budget) {
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
  if (!pick) return -1;
  const std::vector<int>& prompt = pick->prompt();
  const int n = static_cast<int>(prompt.size());
  const int from = pick->prefilled();
  int len = std::min(step_.prefill_chunk(n), n - 1 - from);
  if (budget >= 0) len = std::min(len, budget);
  const int to = from + len;
  try {
    step_.prefill(pick->id(), std::vector<int>(prompt.begin() + from, prompt.begin() + to));
  } catch (const InputError&) {
    pick->fail(std::current_exception());
    return 0;
  }
  pick->set_prefilled(to);
  return len;
}

namespace {
// The sequence's id in flight is certainly its last (the token limit): no row is launched for it.
bool ends_at_pending(Sequence& s) { return static_cast<int>(s.result().tokens.size()) + 1 >= s.job().max_tokens; }
}  // namespace

bool Scheduler::may_chain(const InFlight& previous) const {
  for (Sequence* s : previous.rows)
    if (s && !s->finished() && !ends_at_pending(*s) && !step_.chains(s->id())) return false;
  return true;
}

std::optional<Scheduler::InFlight> Scheduler::launch_decode(const std::optional<InFlight>& previous) {
  std::vector<DecodeRow> rows;
  InFlight out;
  for (Sequence& s : running_) {
    if (!s.decoding()) continue;
    const bool pending = previous && std::find(previous->rows.begin(), previous->rows.end(), &s) != previous->rows.end();
    if (pending && ends_at_pending(s)) continue;
    if (step_.length(s.id()) >= step_.max_positions()) {  // the context is full
      if (!pending) s.finish("length");  // else its id in flight is read first, then it ends here next step
      continue;
    }
    rows.push_back({s.id(), pending ? 0 : s.next_input(), pending});
    out.rows.push_back(&s);
  }
  if (rows.empty()) return std::nullopt;
  out.decode = step_.launch(rows);
  if (++steps_ % 256 == 0) mlx::core::clear_cache();
  return out;
}

void Scheduler::read(InFlight& launched) {
  const std::vector<int> sampled = launched.decode->read();
  for (size_t i = 0; i < launched.rows.size(); ++i) {
    Sequence* s = launched.rows[i];
    if (!s || s->finished()) continue;
    s->fed();
    s->accept(sampled[i], step_.take_logprobs(s->id()));
  }
}

void Scheduler::cancel_all() {
  for (Sequence& s : running_) s.finish("cancelled");
}

void Scheduler::fail_all(std::exception_ptr error) {
  in_flight_.clear();
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
