// The pipeline wire protocol between ring neighbours, shared by the one-shot StageRunner and the serving
// pipeline: 4-int headers, hidden states, int payloads and sampled ids, plus the per-stage steps built
// on them (embed-and-send on rank 0, receive-run-forward on the others, sampling on the last rank).
#pragma once

#include <atomic>
#include <deque>
#include <optional>
#include <vector>

#include "engine/sampler.h"
#include "mlx/distributed/distributed.h"
#include "model/model.h"

namespace k2 {

// Every hop r -> r+1 carries one header; kind says what follows it.
struct StageHeader {
  int kind = 0, n = 0, token = 0, flags = 0;
};

enum StageKind {
  kPrefill = 1,   // n tokens' hidden state [1, n, hidden] follows
  kDecode = 2,    // one token (`token`) and its hidden state [1, 1, hidden] follow
  kStop = 3,      // the request (or the one-shot job) ends; `token` is the last id rank 0 saw
  kBegin = 4,     // serving: a new request with an n-token prompt; every rank trims its cache to `token`
  kShutdown = 5,  // serving: rank 0 is leaving; the others leave too
};

enum StageFlags {
  kLastChunk = 1,   // prefill: the prompt's last chunk (the last rank samples after it)
  kWantAck = 2,     // prefill: the last rank answers -1 once the chunk is done (no overlap)
  kEmitted = 4,     // stop: `token` was emitted (finish "length" or "cancelled"), not a stop id
  kLogitsAll = 8,   // prefill: logits task wants every position
  kCancelled = 16,  // stop: the client went away
};

// Sampling parameters as a fixed int32 payload (floats bit-cast, the seed as two halves).
inline constexpr int kSamplingInts = 8;
std::vector<int> pack_sampling(const SamplingParams& p);
SamplingParams unpack_sampling(const std::vector<int>& v);

class StageLink {
 public:
  StageLink(const Model& stage, mlx::core::distributed::Group group);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_first() const { return rank_ == 0; }
  bool is_last() const { return rank_ == size_ - 1; }
  int prev() const { return prev_; }
  const Model& stage() const { return stage_; }

  void send_header(const StageHeader& h);
  StageHeader recv_header();  // throws Error on a malformed header
  void send_hidden(const mlx::core::array& h);
  mlx::core::array recv_hidden(int n);  // [1, n, hidden], lazy
  void send_ints(const std::vector<int>& v);
  std::vector<int> recv_ints(int n);
  void send_token(int id);  // last rank -> rank 0
  int recv_token();         // rank 0 <- last rank

  // Checks that neighbours hold adjacent ranges with the same hidden size and dtype (a message goes
  // once around the ring); doubles as the "everyone has loaded" barrier. Throws InputError on a mismatch.
  void handshake();
  // Throws InputError for an empty prompt, ids outside the vocabulary or a prompt over the context.
  void check_ids(const std::vector<int>& ids) const;

  // Rank 0: embeds `ids` [1, L], runs this stage on `cache` and sends `h` plus the hidden state.
  void send_first(const mlx::core::array& ids, KvCache& cache, const StageHeader& h);
  // Other ranks: receives the hidden state announced by `h`, runs this stage on `cache` and (except on
  // the last rank) forwards header and result. Returns the stage output [1, h.n, hidden] (lazy).
  mlx::core::array run_received(const StageHeader& h, KvCache& cache);
  // Evaluates arrays that depend on data from the previous rank (named as the wait for crash messages).
  void eval_from_prev(const std::vector<mlx::core::array>& arrays);
  // Last rank: samples the id after the last position of `y` [1, n, hidden] and sends it to rank 0.
  int sample_and_send(const mlx::core::array& y, Sampler& sampler, const std::optional<mlx::core::array>& recent);

  // The neighbour this rank is blocked on (-1: none) — read by a crash handler to name a lost peer.
  int waiting_on() const { return waiting_on_.load(); }

 private:
  const Model& stage_;
  mlx::core::distributed::Group group_;
  int rank_, size_, next_, prev_, last_;
  std::atomic<int> waiting_on_{-1};
};

// Recent tokens for the repetition penalty, kept exactly as engine/generate.cpp keeps them.
class RecentTokens {
 public:
  RecentTokens(const SamplingParams& p, const std::vector<int>& prompt);
  void push(int id);
  std::optional<mlx::core::array> array() const;  // [n] int32, or none when the penalty is off

 private:
  int context_;
  std::deque<int> ids_;
};

}  // namespace k2
