// One-shot pipeline job over StageLink: rank 0 prefills in chunks and decodes, the others follow headers;
// the last rank returns each sampled id to rank 0 (its ring neighbour). Rank 0 decides when generation
// ends and tells the others with a stop header.
#include "pipeline/stage_runner.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/session.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;
namespace dist = mlx::core::distributed;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

StageRunner::StageRunner(const Model& stage, dist::Group group, PipelineOptions options)
    : stage_(stage), options_(options), link_(stage, group), cache_(stage.make_cache()) {}

void StageRunner::prefill_first(const std::vector<int>& ids, bool logits_all) {
  const int n = static_cast<int>(ids.size());
  const int step = prefill_chunk_size(stage_.config(), stage_.dtype(), n, options_.prefill);
  // As Session::prefill cuts it: for generation the last prompt token runs alone, as a decode step (in bf16 a
  // token computed inside a chunk differs from the same token computed alone, and the tokens would then
  // differ from `generate`'s); for all-position logits every token is in a chunk.
  const int body = logits_all ? n : n - 1;
  std::vector<std::pair<int, int>> chunks;
  for (int start = 0; start < body; start += step) chunks.emplace_back(start, std::min(step, body - start));
  if (body < n) chunks.emplace_back(n - 1, 1);
  for (const auto& [start, len] : chunks) {
    const bool last = start + len == n;
    mx::array chunk(ids.data() + start, mx::Shape{1, len}, mx::int32);
    const int flags = (last ? kLastChunk : 0) | (!last && !options_.overlap ? kWantAck : 0) | (logits_all ? kLogitsAll : 0);
    link_.send_first(chunk, cache_, {kPrefill, len, 0, flags});
    if (!last && !options_.overlap && link_.recv_token() != -1)
      throw Error("pipeline protocol: expected a prefill acknowledgement from the last rank");
  }
}

PipelineResult StageRunner::generate(const std::vector<int>& prompt, const SamplingParams& sampling,
                                     const GenerateOptions& options, const std::function<bool(int)>& on_token) {
  link_.check_ids(prompt);
  sampling.validate();
  if (options.max_tokens < 0) throw InputError(fmt::format("max_tokens must be >= 0, got {}", options.max_tokens));
  PipelineResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  if (options.max_tokens == 0) {
    r.finish_reason = "length";
    return r;
  }
  if (size() == 1) {
    Session session(stage_);
    Sampler sampler(sampling);
    GenerateOptions o = options;
    o.prefill = options_.prefill;
    const GenerationStats s = k2::generate(session, prompt, sampler, o, on_token);
    r.tokens = s.tokens;
    r.finish_reason = s.finish_reason;
    r.prefill_seconds = s.prefill_seconds;
    r.decode_seconds = s.decode_seconds;
    return r;
  }
  if (is_first()) return generate_first(prompt, options, on_token);
  return follow(prompt, sampling, true);
}

PipelineResult StageRunner::generate_first(const std::vector<int>& prompt, const GenerateOptions& options,
                                           const std::function<bool(int)>& on_token) {
  PipelineResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  const auto start = std::chrono::steady_clock::now();
  prefill_first(prompt, false);
  int id = link_.recv_token();
  r.prefill_seconds = seconds_since(start);
  const auto decode_start = std::chrono::steady_clock::now();
  while (true) {
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), id) != options.stop_tokens.end()) {
      r.finish_reason = "stop";
      link_.send_header({kStop, 0, id, 0});
      break;
    }
    r.tokens.push_back(id);
    const bool cancelled = on_token && !on_token(id);
    if (cancelled || static_cast<int>(r.tokens.size()) == options.max_tokens) {
      r.finish_reason = cancelled ? "cancelled" : "length";
      link_.send_header({kStop, 0, id, kEmitted | (cancelled ? kCancelled : 0)});
      break;
    }
    link_.send_first(mx::full({1, 1}, id, mx::int32), cache_, {kDecode, 1, id, 0});
    id = link_.recv_token();
    if ((r.tokens.size() + 1) % 256 == 0) mx::clear_cache();
  }
  r.decode_seconds = seconds_since(decode_start);
  return r;
}

PipelineResult StageRunner::follow(const std::vector<int>& prompt, const SamplingParams& sampling, bool sample) {
  PipelineResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  std::optional<Sampler> sampler;
  if (is_last() && sample) sampler.emplace(sampling);
  RecentTokens recent(sampling, prompt);
  std::vector<mx::array> rows;  // logits task: [len, vocab] per chunk, or the last position [vocab]
  const int vocab = stage_.config().vocab_size, hidden = stage_.config().hidden_size;
  auto check_agrees = [&](int token, const char* what) {
    if (sampler && (r.sampled.empty() || r.sampled.back() != token))
      throw Error(fmt::format("rank {}: rank 0 reports {} token {} but this rank sampled {}", rank(), what, token,
                              r.sampled.empty() ? -1 : r.sampled.back()));
  };
  std::optional<std::chrono::steady_clock::time_point> decode_start;
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const StageHeader h = link_.recv_header();
    if (h.kind == kBegin || h.kind == kShutdown)
      throw Error(fmt::format("rank {}: rank 0 sent a serving header (kind {}) to a one-shot pipeline job; start every "
                              "rank with the same command", rank(), h.kind));
    if (h.kind == kStop) {
      if (!is_last()) link_.send_header(h);
      if (sample) check_agrees(h.token, "the final");
      if (h.flags & kEmitted) r.tokens.push_back(h.token);
      r.finish_reason = !(h.flags & kEmitted) ? "stop" : (h.flags & kCancelled) ? "cancelled" : "length";
      break;
    }
    if (h.kind == kDecode) {
      if (!decode_start) decode_start = std::chrono::steady_clock::now();
      check_agrees(h.token, "emitted");
      r.tokens.push_back(h.token);
      recent.push(h.token);
    }
    mx::array y = link_.run_received(h, cache_);  // [1, n, hidden]
    if (!is_last()) continue;
    const bool final_chunk = h.kind == kDecode || (h.flags & kLastChunk);
    if (!sample && (h.flags & kLogitsAll)) {
      rows.push_back(mx::astype(mx::reshape(stage_.head(y), {h.n, vocab}), mx::float32));  // [n, vocab]
    } else if (!sample && final_chunk) {
      mx::array tail = mx::slice(y, {0, h.n - 1, 0}, {1, h.n, hidden});                     // [1, 1, hidden]
      rows.push_back(mx::astype(mx::reshape(stage_.head(tail), {vocab}), mx::float32));     // [vocab]
    }
    if (!final_chunk || !sample) link_.eval_from_prev(cache_.state());
    if (!sample && !rows.empty()) link_.eval_from_prev({rows.back()});
    if (h.kind == kPrefill && !final_chunk) {
      if (h.flags & kWantAck) link_.send_token(-1);
      continue;
    }
    if (!sample) continue;
    const int id = link_.sample_and_send(y, *sampler, recent.array());
    if (r.sampled.empty()) r.prefill_seconds = seconds_since(start);
    r.sampled.push_back(id);
  }
  if (decode_start) r.decode_seconds = seconds_since(*decode_start);
  if (!rows.empty()) r.logits = rows.size() == 1 ? rows.front() : mx::concatenate(rows, 0);
  return r;
}

PipelineResult StageRunner::logits(const std::vector<int>& ids, bool all_positions) {
  link_.check_ids(ids);
  PipelineResult r;
  r.prompt_tokens = static_cast<int>(ids.size());
  if (size() == 1) {
    Session session(stage_);
    r.logits = mx::astype(session.prefill(ids, options_.prefill, all_positions), mx::float32);
    mx::eval(*r.logits);
    return r;
  }
  if (!is_first()) return follow(ids, SamplingParams{}, false);
  const auto start = std::chrono::steady_clock::now();
  prefill_first(ids, all_positions);
  link_.send_header({kStop, 0, 0, 0});
  r.prefill_seconds = seconds_since(start);
  return r;
}

}  // namespace k2
