// Pipeline wire protocol. Every hop r -> r+1 carries a 4-int header {kind, n, token, flags}, then (for
// prefill and decode) the hidden state [1, n, hidden]; the last rank returns each sampled id to rank 0
// (its ring neighbour). Rank 0 decides when generation ends and tells the others with a stop header.
#include "pipeline/stage_runner.h"

#include <algorithm>
#include <chrono>
#include <deque>

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

int dtype_code(mx::Dtype d) { return d == mx::float32 ? 0 : d == mx::bfloat16 ? 1 : d == mx::float16 ? 2 : 3; }

// Recent tokens for the repetition penalty, kept exactly as engine/generate.cpp keeps them.
class Recent {
 public:
  Recent(const SamplingParams& p, const std::vector<int>& prompt)
      : context_(p.repetition_penalty != 1.0f ? p.repetition_context : 0) {
    for (size_t i = prompt.size() > static_cast<size_t>(context_) ? prompt.size() - context_ : 0; i < prompt.size(); ++i)
      ids_.push_back(prompt[i]);
  }
  void push(int id) {
    if (context_ == 0) return;
    ids_.push_back(id);
    while (static_cast<int>(ids_.size()) > context_) ids_.pop_front();
  }
  std::optional<mx::array> array() const {
    if (context_ == 0 || ids_.empty()) return std::nullopt;
    std::vector<int> v(ids_.begin(), ids_.end());
    return mx::array(v.data(), mx::Shape{static_cast<int>(v.size())}, mx::int32);
  }

 private:
  int context_;
  std::deque<int> ids_;
};

}  // namespace

StageRunner::StageRunner(const Model& stage, dist::Group group, PipelineOptions options)
    : stage_(stage),
      group_(group),
      options_(options),
      rank_(group.rank()),
      size_(group.size()),
      next_((rank_ + 1) % size_),
      prev_((rank_ + size_ - 1) % size_),
      last_(size_ - 1),
      cache_(stage.make_cache()) {
  if (is_first() && !stage.has_embedding())
    throw InputError(fmt::format("rank 0 must hold the embedding, but its stage [{}, {}) was loaded without it",
                                 stage.first_layer(), stage.last_layer()));
  if (is_last() && !stage.has_head())
    throw InputError(fmt::format("rank {} (the last) must hold the norm and lm_head, but its stage [{}, {}) has none",
                                 rank_, stage.first_layer(), stage.last_layer()));
}

void StageRunner::send_header(const Header& h) {
  const int v[4] = {h.kind, h.n, h.token, h.flags};
  waiting_on_ = next_;
  mx::eval(dist::send(mx::array(v, {4}, mx::int32), next_, group_));
  waiting_on_ = -1;
}

StageRunner::Header StageRunner::recv_header() {
  waiting_on_ = prev_;
  mx::array a = dist::recv({4}, mx::int32, prev_, group_);
  mx::eval(a);
  waiting_on_ = -1;
  const int32_t* p = a.data<int32_t>();
  Header h{p[0], p[1], p[2], p[3]};
  if (h.kind < kPrefill || h.kind > kStop || h.n < 0)
    throw Error(fmt::format("rank {}: malformed pipeline header from rank {} (kind {}, n {})", rank_, prev_, h.kind, h.n));
  return h;
}

void StageRunner::send_hidden(const mx::array& h) {
  waiting_on_ = next_;
  mx::eval(dist::send(h, next_, group_));
  waiting_on_ = -1;
}

mx::array StageRunner::recv_hidden(int n) {
  return dist::recv({1, n, stage_.config().hidden_size}, stage_.dtype(), prev_, group_);  // [1, n, hidden]
}

void StageRunner::send_token(int id) {
  waiting_on_ = 0;
  mx::eval(dist::send(mx::array(id, mx::int32), 0, group_));
  waiting_on_ = -1;
}

int StageRunner::recv_token() {
  waiting_on_ = last_;
  mx::array a = dist::recv({}, mx::int32, last_, group_);
  mx::eval(a);
  waiting_on_ = -1;
  return a.item<int32_t>();
}

void StageRunner::check_ids(const std::vector<int>& ids) const {
  if (ids.empty()) throw InputError("the prompt needs at least one token");
  const int vocab = stage_.config().vocab_size;
  for (int id : ids)
    if (id < 0 || id >= vocab) throw InputError(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
  const size_t limit = static_cast<size_t>(stage_.config().max_position_embeddings);
  if (ids.size() > limit)
    throw InputError(fmt::format("{} tokens exceed the model's context of {}", ids.size(), limit));
}

void StageRunner::handshake() {
  if (size_ == 1) return;
  const int mine[4] = {stage_.first_layer(), stage_.last_layer(), stage_.config().hidden_size, dtype_code(stage_.dtype())};
  auto exchange_in = [&]() {
    waiting_on_ = prev_;
    mx::array a = dist::recv({4}, mx::int32, prev_, group_);
    mx::eval(a);
    waiting_on_ = -1;
    return std::vector<int>(a.data<int32_t>(), a.data<int32_t>() + 4);
  };
  auto exchange_out = [&]() {
    waiting_on_ = next_;
    mx::eval(dist::send(mx::array(mine, {4}, mx::int32), next_, group_));
    waiting_on_ = -1;
  };
  if (is_first()) exchange_out();
  const std::vector<int> theirs = exchange_in();
  if (theirs[2] != mine[2] || theirs[3] != mine[3])
    throw InputError(fmt::format("rank {} runs hidden size {} / dtype code {} but rank {} runs {} / {} — start every "
                                 "rank with the same model and --dtype", rank_, mine[2], mine[3], prev_, theirs[2], theirs[3]));
  if (is_first() && theirs[1] != stage_.config().num_hidden_layers)
    throw InputError(fmt::format("the last rank's stage ends at layer {}, not at the model's {} layers", theirs[1],
                                 stage_.config().num_hidden_layers));
  if (!is_first() && theirs[1] != mine[0])
    throw InputError(fmt::format("rank {} runs layers [{}, {}) but rank {} ends at layer {}: stages must be contiguous",
                                 rank_, mine[0], mine[1], prev_, theirs[1]));
  if (!is_first()) exchange_out();
}

void StageRunner::prefill_first(const std::vector<int>& ids, bool logits_all) {
  const int n = static_cast<int>(ids.size());
  const int step = options_.prefill_chunk <= 0 ? n : options_.prefill_chunk;
  for (int start = 0; start < n; start += step) {
    const int len = std::min(step, n - start);
    const bool last = start + len == n;
    mx::array chunk(ids.data() + start, mx::Shape{1, len}, mx::int32);
    mx::array h = stage_.run_layers(stage_.embed(chunk), cache_);  // [1, len, hidden]
    const int flags = (last ? kLastChunk : 0) | (!last && !options_.overlap ? kWantAck : 0) | (logits_all ? kLogitsAll : 0);
    send_header({kPrefill, len, 0, flags});
    send_hidden(h);
    if (!last && !options_.overlap && recv_token() != -1)
      throw Error("pipeline protocol: expected a prefill acknowledgement from the last rank");
  }
}

PipelineResult StageRunner::generate(const std::vector<int>& prompt, const SamplingParams& sampling,
                                     const GenerateOptions& options, const std::function<bool(int)>& on_token) {
  check_ids(prompt);
  sampling.validate();
  if (options.max_tokens < 0) throw InputError(fmt::format("max_tokens must be >= 0, got {}", options.max_tokens));
  PipelineResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  if (options.max_tokens == 0) {
    r.finish_reason = "length";
    return r;
  }
  if (size_ == 1) {
    Session session(stage_);
    Sampler sampler(sampling);
    GenerateOptions o = options;
    o.prefill_chunk = options_.prefill_chunk;
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
  int id = recv_token();
  r.prefill_seconds = seconds_since(start);
  const auto decode_start = std::chrono::steady_clock::now();
  while (true) {
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), id) != options.stop_tokens.end()) {
      r.finish_reason = "stop";
      send_header({kStop, 0, id, 0});
      break;
    }
    r.tokens.push_back(id);
    const bool cancelled = on_token && !on_token(id);
    if (cancelled || static_cast<int>(r.tokens.size()) == options.max_tokens) {
      r.finish_reason = cancelled ? "cancelled" : "length";
      send_header({kStop, 0, id, kEmitted | (cancelled ? kCancelled : 0)});
      break;
    }
    mx::array ids = mx::array(id, mx::int32);
    mx::array h = stage_.run_layers(stage_.embed(mx::reshape(ids, {1, 1})), cache_);  // [1, 1, hidden]
    send_header({kDecode, 1, id, 0});
    send_hidden(h);
    id = recv_token();
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
  Recent recent(sampling, prompt);
  std::vector<mx::array> rows;  // logits task: [len, vocab] per chunk, or the last position [vocab]
  const int vocab = stage_.config().vocab_size, hidden = stage_.config().hidden_size;
  auto check_agrees = [&](int token, const char* what) {
    if (sampler && (r.sampled.empty() || r.sampled.back() != token))
      throw Error(fmt::format("rank {}: rank 0 reports {} token {} but this rank sampled {}", rank_, what, token,
                              r.sampled.empty() ? -1 : r.sampled.back()));
  };
  std::optional<std::chrono::steady_clock::time_point> decode_start;
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const Header h = recv_header();
    if (h.kind == kStop) {
      if (!is_last()) send_header(h);
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
    mx::array y = stage_.run_layers(recv_hidden(h.n), cache_);  // [1, n, hidden]
    if (!is_last()) {
      send_header(h);
      send_hidden(y);
      continue;
    }
    waiting_on_ = prev_;
    const bool final_chunk = h.kind == kDecode || (h.flags & kLastChunk);
    if (!sample && (h.flags & kLogitsAll)) {
      rows.push_back(mx::astype(mx::reshape(stage_.head(y), {h.n, vocab}), mx::float32));  // [n, vocab]
    } else if (!sample && final_chunk) {
      mx::array tail = mx::slice(y, {0, h.n - 1, 0}, {1, h.n, hidden});                     // [1, 1, hidden]
      rows.push_back(mx::astype(mx::reshape(stage_.head(tail), {vocab}), mx::float32));     // [vocab]
    }
    if (!final_chunk || !sample) mx::eval(cache_.state());
    if (!sample && !rows.empty()) mx::eval(rows.back());
    waiting_on_ = -1;
    if (h.kind == kPrefill && !final_chunk) {
      if (h.flags & kWantAck) send_token(-1);
      continue;
    }
    if (!sample) continue;
    mx::array logits = mx::reshape(stage_.head(mx::slice(y, {0, h.n - 1, 0}, {1, h.n, hidden})), {vocab});
    mx::array token = sampler->sample(logits, recent.array());
    waiting_on_ = prev_;
    const int id = static_cast<int>(token.item<uint32_t>());
    waiting_on_ = -1;
    if (r.sampled.empty()) r.prefill_seconds = seconds_since(start);
    r.sampled.push_back(id);
    send_token(id);
  }
  if (decode_start) r.decode_seconds = seconds_since(*decode_start);
  if (!rows.empty()) r.logits = rows.size() == 1 ? rows.front() : mx::concatenate(rows, 0);
  return r;
}

PipelineResult StageRunner::logits(const std::vector<int>& ids, bool all_positions) {
  check_ids(ids);
  PipelineResult r;
  r.prompt_tokens = static_cast<int>(ids.size());
  if (size_ == 1) {
    Session session(stage_);
    r.logits = mx::astype(session.prefill(ids, options_.prefill_chunk, all_positions), mx::float32);
    mx::eval(*r.logits);
    return r;
  }
  if (!is_first()) return follow(ids, SamplingParams{}, false);
  const auto start = std::chrono::steady_clock::now();
  prefill_first(ids, all_positions);
  send_header({kStop, 0, 0, 0});
  r.prefill_seconds = seconds_since(start);
  return r;
}

}  // namespace k2
