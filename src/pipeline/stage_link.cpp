// StageLink: blocking send/recv between ring neighbours through mlx::core::distributed, recording which
// neighbour each call waits on; the prefill compute steps of rank 0 and the followers.
#include "pipeline/stage_link.h"

#include <cstring>
#include <exception>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;
namespace dist = mlx::core::distributed;

namespace {

int dtype_code(mx::Dtype d) { return d == mx::float32 ? 0 : d == mx::bfloat16 ? 1 : d == mx::float16 ? 2 : 3; }

int float_bits(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

float bits_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// Sets the neighbour a blocking call waits on; it stays set when the call throws, so that whoever
// handles the error can still name the peer that went away.
class Waiting {
 public:
  Waiting(std::atomic<int>& slot, int peer) : slot_(slot), exceptions_(std::uncaught_exceptions()) { slot_ = peer; }
  ~Waiting() {
    if (std::uncaught_exceptions() == exceptions_) slot_ = -1;
  }

 private:
  std::atomic<int>& slot_;
  int exceptions_;
};

}  // namespace

std::vector<int> pack_sampling(const SamplingParams& p) {
  return {float_bits(p.temperature),        p.top_k,
          float_bits(p.top_p),              float_bits(p.min_p),
          float_bits(p.repetition_penalty), p.repetition_context,
          static_cast<int>(static_cast<uint32_t>(p.seed & 0xffffffffu)), static_cast<int>(static_cast<uint32_t>(p.seed >> 32))};
}

SamplingParams unpack_sampling(const std::vector<int>& v) {
  if (v.size() != kSamplingInts) throw Error(fmt::format("sampling payload has {} ints, expected {}", v.size(), kSamplingInts));
  SamplingParams p;
  p.temperature = bits_float(v[0]);
  p.top_k = v[1];
  p.top_p = bits_float(v[2]);
  p.min_p = bits_float(v[3]);
  p.repetition_penalty = bits_float(v[4]);
  p.repetition_context = v[5];
  p.seed = static_cast<uint64_t>(static_cast<uint32_t>(v[6])) | (static_cast<uint64_t>(static_cast<uint32_t>(v[7])) << 32);
  return p;
}

StageLink::StageLink(const Model& stage, dist::Group group)
    : stage_(stage),
      group_(group),
      rank_(group.rank()),
      size_(group.size()),
      next_((rank_ + 1) % size_),
      prev_((rank_ + size_ - 1) % size_),
      last_(size_ - 1) {
  if (is_first() && !stage.has_embedding())
    throw InputError(fmt::format("rank 0 must hold the embedding, but its stage [{}, {}) was loaded without it",
                                 stage.first_layer(), stage.last_layer()));
  if (is_last() && !stage.has_head())
    throw InputError(fmt::format("rank {} (the last) must hold the norm and lm_head, but its stage [{}, {}) has none",
                                 rank_, stage.first_layer(), stage.last_layer()));
}

void StageLink::send_header(const StageHeader& h) { send_ints({h.kind, h.n, h.token, h.flags}); }

StageHeader StageLink::recv_header() {
  const std::vector<int> p = recv_ints(4);
  StageHeader h{p[0], p[1], p[2], p[3]};
  if (h.kind < kPrefill || h.kind > kShutdown || h.n < 0)
    throw Error(fmt::format("rank {}: malformed pipeline header from rank {} (kind {}, n {})", rank_, prev_, h.kind, h.n));
  return h;
}

void StageLink::send_hidden(const mx::array& h) {
  Waiting w(waiting_on_, next_);
  mx::eval(dist::send(h, next_, group_));
}

mx::array StageLink::recv_hidden(int rows, int n) {
  return dist::recv({rows, n, stage_.config().hidden_size}, stage_.dtype(), prev_, group_);  // [rows, n, hidden]
}

void StageLink::send_ints(const std::vector<int>& v) {
  Waiting w(waiting_on_, next_);
  mx::eval(dist::send(mx::array(v.data(), mx::Shape{static_cast<int>(v.size())}, mx::int32), next_, group_));
}

std::vector<int> StageLink::recv_ints(int n) {
  Waiting w(waiting_on_, prev_);
  mx::array a = dist::recv({n}, mx::int32, prev_, group_);
  mx::eval(a);
  return std::vector<int>(a.data<int32_t>(), a.data<int32_t>() + n);
}

void StageLink::send_to_first(const std::vector<int>& ids) {
  Waiting w(waiting_on_, 0);
  mx::eval(dist::send(mx::array(ids.data(), mx::Shape{static_cast<int>(ids.size())}, mx::int32), 0, group_));
}

std::vector<int> StageLink::recv_from_last(int n) {
  Waiting w(waiting_on_, last_);
  mx::array a = dist::recv({n}, mx::int32, last_, group_);
  mx::eval(a);
  return std::vector<int>(a.data<int32_t>(), a.data<int32_t>() + n);
}

void StageLink::check_ids(const std::vector<int>& ids) const {
  if (ids.empty()) throw InputError("the prompt needs at least one token");
  const int vocab = stage_.config().vocab_size;
  for (int id : ids)
    if (id < 0 || id >= vocab) throw InputError(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
  const size_t limit = static_cast<size_t>(stage_.config().max_position_embeddings);
  if (ids.size() > limit)
    throw InputError(fmt::format("{} tokens exceed the model's context of {}", ids.size(), limit));
}

void StageLink::handshake() {
  if (size_ == 1) return;
  const std::vector<int> mine = {stage_.first_layer(), stage_.last_layer(), stage_.config().hidden_size,
                                 dtype_code(stage_.dtype())};
  if (is_first()) send_ints(mine);
  const std::vector<int> theirs = recv_ints(4);
  if (theirs[2] != mine[2] || theirs[3] != mine[3])
    throw InputError(fmt::format("rank {} runs hidden size {} / dtype code {} but rank {} runs {} / {} — start every "
                                 "rank with the same model and --dtype", rank_, mine[2], mine[3], prev_, theirs[2], theirs[3]));
  if (is_first() && theirs[1] != stage_.config().num_hidden_layers)
    throw InputError(fmt::format("the last rank's stage ends at layer {}, not at the model's {} layers", theirs[1],
                                 stage_.config().num_hidden_layers));
  if (!is_first() && theirs[1] != mine[0])
    throw InputError(fmt::format("rank {} runs layers [{}, {}) but rank {} ends at layer {}: stages must be contiguous",
                                 rank_, mine[0], mine[1], prev_, theirs[1]));
  if (!is_first()) send_ints(mine);
}

void StageLink::send_first(const mx::array& ids, KvCache& cache, const StageHeader& h) {
  mx::array y = stage_.run_layers(stage_.embed(ids), cache);  // [1, L, hidden]
  send_header(h);
  send_hidden(y);
}

mx::array StageLink::run_received(const StageHeader& h, KvCache& cache) {
  mx::array y = stage_.run_layers(recv_hidden(1, h.n), cache);  // [1, n, hidden]
  if (!is_last()) {
    send_header(h);
    send_hidden(y);
  }
  return y;
}

void StageLink::eval_from_prev(const std::vector<mx::array>& arrays) {
  Waiting w(waiting_on_, prev_);
  mx::eval(arrays);
}

}  // namespace k2
