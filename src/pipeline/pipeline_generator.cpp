// Serving pipeline protocol on top of StageLink. Rank 0 validates a request completely before the begin
// header, so that a bad request never leaves the other ranks half-way; prompt splitting and cache
// bookkeeping mirror LocalJobRunner so that a pipeline serves the same tokens as one process.
#include "pipeline/pipeline_generator.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/prompt_cache.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool is_stop(const std::vector<int>& stops, int id) { return std::find(stops.begin(), stops.end(), id) != stops.end(); }

}  // namespace

PipelineJobRunner::PipelineJobRunner(StageLink& link, PipelineServeOptions options,
                                     std::function<void(const std::exception&)> on_lost)
    : link_(link), options_(options), on_lost_(std::move(on_lost)), cache_(link.stage().make_cache()) {
  if (!link.is_first()) throw Error(fmt::format("PipelineJobRunner runs on rank 0, not on rank {}", link.rank()));
}

void PipelineJobRunner::run(GenerationJob& job, const JobHandle& handle, JobResult& result) {
  if (broken_) throw Error("the pipeline lost a rank during an earlier request; restart the job");
  link_.check_ids(job.prompt);
  if (job.max_tokens < 0) throw InputError(fmt::format("max_tokens must be >= 0, got {}", job.max_tokens));
  if (job.max_tokens == 0) {
    result.finish_reason = "length";
    return;
  }
  if (link_.size() == 1) throw Error("PipelineJobRunner needs at least two ranks (serve locally otherwise)");
  try {
    run_request(job, handle, result);
  } catch (const std::exception& e) {
    broken_ = true;
    held_.clear();
    if (on_lost_) on_lost_(e);
    throw;
  }
}

void PipelineJobRunner::run_request(GenerationJob& job, const JobHandle& handle, JobResult& result) {
  const auto start = std::chrono::steady_clock::now();
  // The last rank samples from parameters packed as ints; these do not travel (yet).
  if (job.sampling.logprobs >= 0 || job.prompt_logprobs || !job.sampling.forced_choices.empty())
    throw InputError("logprobs and tool_choice \"required\" with several tools are not available when serving a pipeline");
  const std::vector<int>& prompt = job.prompt;
  const int n = static_cast<int>(prompt.size());
  const int keep = options_.reuse_prompts ? static_cast<int>(std::min(common_prefix(held_, prompt), prompt.size() - 1)) : 0;

  link_.send_header({kBegin, n, keep, 0});
  link_.send_ints(pack_sampling(job.sampling));
  link_.send_ints(prompt);
  cache_.trim_to(keep);
  held_.assign(prompt.begin(), prompt.begin() + keep);
  result.cached_tokens = keep;

  // Chunks as LocalJobRunner and Session::prefill make them: [keep, n - 1) in prefill_chunk steps, then the
  // last token alone (a decode step), so the tokens equal a single process's in bf16 too.
  const int chunk = prefill_chunk_size(link_.stage().config(), link_.stage().dtype(), n, options_.prefill);
  std::vector<std::pair<int, int>> chunks;
  for (int pos = keep; pos < n - 1; pos += chunk) chunks.emplace_back(pos, std::min(pos + chunk, n - 1));
  chunks.emplace_back(n - 1, n);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto [from, to] = chunks[i];
    const bool last = i + 1 == chunks.size();
    if (handle.cancelled()) {
      link_.send_header({kStop, 0, 0, kCancelled});
      held_.assign(prompt.begin(), prompt.begin() + from);  // the chunks sent so far stay valid
      result.finish_reason = "cancelled";
      return;
    }
    const int flags = (last ? kLastChunk : 0) | (!last && !options_.overlap ? kWantAck : 0);
    link_.send_first(mx::array(prompt.data() + from, mx::Shape{1, to - from}, mx::int32), cache_,
                     {kPrefill, to - from, 0, flags});
    if (!last && !options_.overlap && link_.recv_token() != -1)
      throw Error("pipeline protocol: expected a prefill acknowledgement from the last rank");
  }

  int id = link_.recv_token();
  const auto first = std::chrono::steady_clock::now();
  result.first_token_seconds = seconds_between(start, first);
  const int max_positions = link_.stage().config().max_position_embeddings;
  while (true) {
    if (is_stop(job.stop_tokens, id)) {
      result.finish_reason = "stop";
      link_.send_header({kStop, 0, id, 0});
      break;
    }
    result.tokens.push_back(id);
    const bool cancelled = handle.cancelled() || (job.on_token && !job.on_token(id));
    if (cancelled || static_cast<int>(result.tokens.size()) == job.max_tokens || cache_.offset() >= max_positions) {
      result.finish_reason = cancelled ? "cancelled" : "length";
      link_.send_header({kStop, 0, id, kEmitted | (cancelled ? kCancelled : 0)});
      break;
    }
    link_.send_first(mx::full({1, 1}, id, mx::int32), cache_, {kDecode, 1, id, 0});
    id = link_.recv_token();
    if ((result.tokens.size() + 1) % 256 == 0) mx::clear_cache();
  }
  result.decode_seconds = seconds_between(first, std::chrono::steady_clock::now());

  // The caches hold the prompt and every emitted id that was fed back (all but the last, unless a stop
  // id ended the request); keep exactly the ids they hold.
  held_ = prompt;
  held_.insert(held_.end(), result.tokens.begin(), result.tokens.end());
  held_.resize(std::min<size_t>(held_.size(), static_cast<size_t>(cache_.offset())));
  cache_.trim_to(static_cast<int>(held_.size()));
  cache_bytes_ = cache_.nbytes();
}

void PipelineJobRunner::finish() {
  if (broken_ || link_.size() == 1) return;
  try {
    link_.send_header({kShutdown, 0, 0, 0});
  } catch (const std::exception&) {
    // Leaving anyway: the other ranks notice a closed connection themselves.
  }
}

FollowStats follow_requests(StageLink& link) {
  if (link.is_first()) throw Error("follow_requests runs on the ranks after rank 0");
  FollowStats stats;
  const Model& stage = link.stage();
  KvCache cache = stage.make_cache();
  std::optional<Sampler> sampler;
  std::optional<RecentTokens> recent;
  std::vector<int> sampled;
  int steps = 0;
  auto check_agrees = [&](int token, const char* what) {
    if (link.is_last() && (sampled.empty() || sampled.back() != token))
      throw Error(fmt::format("rank {}: rank 0 reports {} token {} but this rank sampled {}", link.rank(), what, token,
                              sampled.empty() ? -1 : sampled.back()));
  };
  auto in_request = [&](const StageHeader& h) {
    if (!recent)
      throw Error(fmt::format("rank {}: pipeline protocol: header kind {} outside a request (is every rank running "
                              "`serve`?)", link.rank(), h.kind));
  };
  while (true) {
    const StageHeader h = link.recv_header();
    switch (h.kind) {
      case kShutdown:
        if (!link.is_last()) link.send_header(h);
        return stats;
      case kBegin: {
        const std::vector<int> params = link.recv_ints(kSamplingInts);
        const std::vector<int> prompt = link.recv_ints(h.n);
        if (!link.is_last()) {
          link.send_header(h);
          link.send_ints(params);
          link.send_ints(prompt);
        }
        if (h.token < 0 || h.token > cache.offset())
          throw Error(fmt::format("rank {}: rank 0 keeps {} cached positions but this rank holds {}", link.rank(),
                                  h.token, cache.offset()));
        cache.trim_to(h.token);
        const SamplingParams sampling = unpack_sampling(params);
        if (link.is_last()) sampler.emplace(sampling);
        recent.emplace(sampling, prompt);
        sampled.clear();
        ++stats.requests;
        break;
      }
      case kPrefill: {
        in_request(h);
        mx::array y = link.run_received(h, cache);  // [1, n, hidden]
        if (!link.is_last()) break;
        if (h.flags & kLastChunk) {
          sampled.push_back(link.sample_and_send(y, *sampler, recent->array()));
        } else {
          link.eval_from_prev(cache.state());
          if (h.flags & kWantAck) link.send_token(-1);
        }
        break;
      }
      case kDecode: {
        in_request(h);
        check_agrees(h.token, "emitted");
        recent->push(h.token);
        mx::array y = link.run_received(h, cache);  // [1, 1, hidden]
        if (link.is_last()) sampled.push_back(link.sample_and_send(y, *sampler, recent->array()));
        if (++steps % 256 == 0) mx::clear_cache();
        break;
      }
      case kStop:
        in_request(h);
        if (!link.is_last()) link.send_header(h);
        if (!sampled.empty()) check_agrees(h.token, "the final");
        if (h.flags & kCancelled) ++stats.cancelled;
        recent.reset();
        sampler.reset();
        mx::clear_cache();
        break;
    }
  }
}

}  // namespace k2
