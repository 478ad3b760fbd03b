// PipelineStep and follow(): the generation step as messages between the stages. Rank 0 embeds and runs its
// layers, every later rank runs its own on the received hidden state and forwards it, the last rank applies the
// norm and lm_head and samples. Prefill chunks are cut exactly as LocalStep cuts them (prefill_chunk.h), so a
// pipeline gives the same tokens as one process.
#include "pipeline/pipeline_step.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/prompt_cache.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

PipelineStep::PipelineStep(StageLink& link, PipelineStepOptions options, std::function<void(const std::exception&)> on_lost)
    : link_(link), options_(options), on_lost_(std::move(on_lost)) {
  if (!link.is_first()) throw Error(fmt::format("PipelineStep runs on rank 0, not on rank {}", link.rank()));
  if (link.size() == 1) throw Error("PipelineStep needs at least two ranks (run locally otherwise)");
  if (options_.slots < 1) throw InputError(fmt::format("a pipeline needs at least one slot, got {}", options_.slots));
  for (int i = 0; i < options_.slots; ++i) slots_.push_back(Slot{link.stage().make_cache(), {}, -1});
}

template <class F>
auto PipelineStep::guarded(F&& body) {
  if (broken_) throw Error("the pipeline lost a rank during an earlier request; restart the job");
  try {
    return body();
  } catch (const std::exception& e) {
    broken_ = true;
    for (Slot& s : slots_) s.held.clear();
    unanswered_.clear();  // their ids never come
    if (on_lost_) on_lost_(e);
    throw;
  }
}

PipelineStep::Slot& PipelineStep::slot_of(int seq) {
  for (Slot& s : slots_)
    if (s.seq == seq) return s;
  throw Error(fmt::format("pipeline: no slot runs sequence {}", seq));
}

const PipelineStep::Slot& PipelineStep::slot_of(int seq) const { return const_cast<PipelineStep*>(this)->slot_of(seq); }

int PipelineStep::prefill_chunk(int prompt_tokens) const {
  return prefill_chunk_size(link_.stage().config(), activations_of(link_.stage()), prompt_tokens, options_.prefill);
}

std::vector<TokenLogprobs> PipelineStep::score_prompt(const std::vector<int>&, int) {
  throw InputError("prompt logprobs are not available when serving a pipeline");
}

int PipelineStep::begin(int seq, const std::vector<int>& prompt, const SamplingParams& sampling) {
  // The last rank samples from parameters packed as ints; these do not travel (yet).
  if (sampling.logprobs >= 0 || !sampling.forced_choices.empty())
    throw InputError("logprobs and tool_choice \"required\" with several tools are not available when serving a pipeline");
  // The free slot sharing the longest prefix with the prompt (at least one prompt token must still run).
  int best = -1;
  size_t best_len = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].seq >= 0) continue;
    const size_t n = options_.reuse_prompts ? common_prefix(slots_[i].held, prompt) : 0;
    if (best < 0 || n > best_len) {
      best = static_cast<int>(i);
      best_len = n;
    }
  }
  if (best < 0) throw Error(fmt::format("pipeline: all {} slots are busy", slots_.size()));
  Slot& slot = slots_[best];
  const int n = static_cast<int>(prompt.size());
  const int keep = static_cast<int>(std::min(best_len, prompt.size() - 1));
  guarded([&] {
    link_.send_header({kBegin, n, best, keep});
    link_.send_ints(pack_sampling(sampling));
    link_.send_ints(prompt);
    return 0;
  });
  slot.cache.trim_to(keep);
  slot.held.assign(prompt.begin(), prompt.begin() + keep);
  slot.seq = seq;
  return keep;
}

void PipelineStep::prefill(int seq, const std::vector<int>& ids) {
  Slot& slot = slot_of(seq);
  const int index = static_cast<int>(&slot - slots_.data());
  const int len = static_cast<int>(ids.size());
  guarded([&] {
    link_.send_first(mx::array(ids.data(), mx::Shape{1, len}, mx::int32), slot.cache,
                     {kPrefill, len, index, options_.overlap ? 0 : kWantAck});
    if (!options_.overlap) {
      receive_until(nullptr);  // the answers of the decodes in flight come back before the acknowledgement
      if (link_.recv_from_last(1).front() != -1)
        throw Error("pipeline protocol: expected a prefill acknowledgement from the last rank");
    }
    return 0;
  });
}

class PipelineDecode : public LaunchedDecode {
 public:
  PipelineDecode(PipelineStep& step, std::shared_ptr<PipelineStep::Answer> answer)
      : step_(step), answer_(std::move(answer)) {}
  std::vector<int> read() override {
    if (!answer_->ids) step_.read_until(answer_.get());
    return *answer_->ids;
  }

 private:
  PipelineStep& step_;
  std::shared_ptr<PipelineStep::Answer> answer_;
};

int PipelineStep::micro_batches() const { return options_.micro_batches > 0 ? options_.micro_batches : link_.size(); }

void PipelineStep::receive_until(const Answer* answer) {
  while (!unanswered_.empty()) {
    std::shared_ptr<Answer> oldest = unanswered_.front();
    unanswered_.pop_front();
    oldest->ids = link_.recv_from_last(oldest->rows);
    if (oldest.get() == answer) break;
  }
}

void PipelineStep::read_until(const Answer* answer) {
  guarded([&] {
    receive_until(answer);
    return 0;
  });
  if (answer && !answer->ids) throw Error("pipeline: a decode was read after the pipeline lost its answers");
}

std::unique_ptr<LaunchedDecode> PipelineStep::launch(const std::vector<DecodeRow>& rows) {
  const int B = static_cast<int>(rows.size());
  std::vector<int> payload(2 * B);
  std::vector<KvCache*> caches(B);
  for (int b = 0; b < B; ++b) {
    if (rows[b].chained) throw Error(fmt::format("pipeline: sequence {} cannot chain its decode row", rows[b].seq));
    Slot& slot = slot_of(rows[b].seq);
    payload[b] = static_cast<int>(&slot - slots_.data());
    payload[B + b] = rows[b].token;
    caches[b] = &slot.cache;
  }
  const Model& stage = link_.stage();
  guarded([&] {
    mx::array ids(payload.data() + B, mx::Shape{B, 1}, mx::int32);
    mx::array y = stage.run_layers(stage.embed(ids), caches);  // [B, 1, hidden]
    link_.send_header({kDecode, B, 0, 0});
    link_.send_ints(payload);
    link_.send_hidden(y);
    return 0;
  });
  auto answer = std::make_shared<Answer>(Answer{B, std::nullopt});
  unanswered_.push_back(answer);
  return std::make_unique<PipelineDecode>(*this, std::move(answer));
}

std::vector<int> PipelineStep::decode(const std::vector<DecodeRow>& rows) { return launch(rows)->read(); }

void PipelineStep::end(int seq, SequenceEnd how) {
  Slot& slot = slot_of(seq);
  const int index = static_cast<int>(&slot - slots_.data());
  slot.seq = -1;
  slot.held.clear();
  if (broken_) return;
  guarded([&] {
    link_.send_header({kEnd, how.last_emitted + 1, index, how.cancelled ? kCancelled : 0});
    return 0;
  });
  // What every rank's cache of this slot holds stays there for the next prompt that shares it.
  if (how.keep && options_.reuse_prompts) slot.held = std::move(how.held);
  slot.cache.trim_to(static_cast<int>(slot.held.size()));
}

int PipelineStep::length(int seq) const { return slot_of(seq).cache.offset(); }

size_t PipelineStep::cache_entries() const {
  return static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.held.empty(); }));
}

size_t PipelineStep::cache_bytes() const {
  size_t n = 0;
  for (const Slot& s : slots_) n += s.cache.nbytes();
  return n;
}

void PipelineStep::finish() {
  if (broken_) return;
  try {
    receive_until(nullptr);
    link_.send_header({kShutdown, 0, 0, 0});
  } catch (const std::exception&) {
    // Leaving anyway: the other ranks notice a closed connection themselves.
  }
}

void pipeline_logits(StageLink& link, const std::vector<int>& ids, bool all_positions, const PipelineStepOptions& options) {
  link.check_ids(ids);
  KvCache cache = link.stage().make_cache();
  const int n = static_cast<int>(ids.size());
  const int step = prefill_chunk_size(link.stage().config(), activations_of(link.stage()), n, options.prefill);
  link.send_header({kBegin, n, 0, 0});
  link.send_ints(pack_sampling(SamplingParams{}));
  link.send_ints(ids);
  for (int start = 0; start < n; start += step) {
    const int len = std::min(step, n - start);
    const bool last = start + len == n;
    const int flags = (last ? kLastChunk : 0) | (!last && !options.overlap ? kWantAck : 0) |
                      (all_positions ? kLogitsAll : last ? kLogitsLast : 0);
    link.send_first(mx::array(ids.data() + start, mx::Shape{1, len}, mx::int32), cache, {kPrefill, len, 0, flags});
    if (!last && !options.overlap && link.recv_from_last(1).front() != -1)
      throw Error("pipeline protocol: expected a prefill acknowledgement from the last rank");
  }
  link.send_header({kEnd, 0, 0, 0});
  link.send_header({kShutdown, 0, 0, 0});
}

namespace {

// One slot on a rank after rank 0: its cache and, on the last rank, the sequence's sampler.
struct FollowerSlot {
  KvCache cache;
  std::optional<SequenceSampler> sampler;
  std::vector<int> emitted;  // ids fed back after the prompt (the sequence's output so far)
  bool active = false, fed_prompt_end = false;
};

}  // namespace

FollowStats follow(StageLink& link) {
  if (link.is_first()) throw Error("follow runs on the ranks after rank 0");
  FollowStats stats;
  const Model& stage = link.stage();
  const int vocab = stage.config().vocab_size, hidden = stage.config().hidden_size;
  std::map<int, FollowerSlot> slots;
  std::vector<mx::array> logit_rows;  // logits job: [len, vocab] per chunk, or the last position [vocab]
  long steps = 0;
  auto active = [&](int index, const StageHeader& h) -> FollowerSlot& {
    auto it = slots.find(index);
    if (it == slots.end() || !it->second.active)
      throw Error(fmt::format("rank {}: pipeline protocol: header kind {} for slot {} outside a request (is every "
                              "rank running the same command?)", link.rank(), h.kind, index));
    return it->second;
  };
  while (true) {
    const StageHeader h = link.recv_header();
    switch (h.kind) {
      case kShutdown:
        if (!link.is_last()) link.send_header(h);
        if (!logit_rows.empty())
          stats.logits = logit_rows.size() == 1 ? logit_rows.front() : mx::concatenate(logit_rows, 0);
        return stats;
      case kBegin: {
        const std::vector<int> params = link.recv_ints(kSamplingInts);
        const std::vector<int> prompt = link.recv_ints(h.n);
        if (!link.is_last()) {
          link.send_header(h);
          link.send_ints(params);
          link.send_ints(prompt);
        }
        FollowerSlot& slot = slots.try_emplace(h.token, FollowerSlot{stage.make_cache(), {}, {}, false, false}).first->second;
        if (h.flags < 0 || h.flags > slot.cache.offset())
          throw Error(fmt::format("rank {}: rank 0 keeps {} cached positions of slot {} but this rank holds {}",
                                  link.rank(), h.flags, h.token, slot.cache.offset()));
        slot.cache.trim_to(h.flags);
        if (link.is_last()) slot.sampler.emplace(unpack_sampling(params), prompt);
        slot.emitted.clear();
        slot.active = true;
        slot.fed_prompt_end = false;
        ++stats.requests;
        break;
      }
      case kPrefill: {
        FollowerSlot& slot = active(h.token, h);
        mx::array y = link.run_received(h, slot.cache);  // [1, n, hidden]
        if (!link.is_last()) break;
        if (h.flags & kLogitsAll) {
          logit_rows.push_back(mx::astype(mx::reshape(stage.head(y), {h.n, vocab}), mx::float32));  // [n, vocab]
        } else if ((h.flags & kLogitsLast) && (h.flags & kLastChunk)) {
          mx::array tail = mx::slice(y, {0, h.n - 1, 0}, {1, h.n, hidden});                   // [1, 1, hidden]
          logit_rows.push_back(mx::astype(mx::reshape(stage.head(tail), {vocab}), mx::float32));  // [vocab]
        }
        link.eval_from_prev(slot.cache.state());
        if (!logit_rows.empty()) link.eval_from_prev({logit_rows.back()});
        if (h.flags & kWantAck) link.send_to_first({-1});
        break;
      }
      case kDecode: {
        const int B = h.n;
        const std::vector<int> payload = link.recv_ints(2 * B);
        std::vector<KvCache*> caches(B);
        std::vector<FollowerSlot*> rows(B);
        for (int b = 0; b < B; ++b) {
          rows[b] = &active(payload[b], h);
          caches[b] = &rows[b]->cache;
        }
        mx::array y = stage.run_layers(link.recv_hidden(B, 1), caches);  // [B, 1, hidden]
        if (!link.is_last()) {
          link.send_header(h);
          link.send_ints(payload);
          link.send_hidden(y);
        }
        for (int b = 0; b < B; ++b) {
          if (rows[b]->fed_prompt_end) rows[b]->emitted.push_back(payload[B + b]);
          rows[b]->fed_prompt_end = true;
        }
        if (link.is_last()) {
          mx::array logits = stage.head(y);  // [B, 1, vocab]
          std::vector<mx::array> tokens;
          for (int b = 0; b < B; ++b)
            tokens.push_back(rows[b]->sampler->next(mx::reshape(mx::slice(logits, {b, 0, 0}, {b + 1, 1, vocab}), {vocab}),
                                                    payload[B + b]));
          link.eval_from_prev(tokens);
          std::vector<int> ids(B);
          for (int b = 0; b < B; ++b) ids[b] = static_cast<int>(tokens[b].item<uint32_t>());
          link.send_to_first(ids);
        }
        if (++steps % 256 == 0) mx::clear_cache();
        break;
      }
      case kEnd: {
        if (!link.is_last()) link.send_header(h);
        FollowerSlot& slot = active(h.token, h);
        if (h.n > 0) slot.emitted.push_back(h.n - 1);
        stats.last_tokens = slot.emitted;
        if (h.flags & kCancelled) ++stats.cancelled;
        slot.active = false;
        slot.sampler.reset();
        break;
      }
      default:
        throw Error(fmt::format("rank {}: unexpected pipeline header kind {}", link.rank(), h.kind));
    }
  }
}

}  // namespace k2
