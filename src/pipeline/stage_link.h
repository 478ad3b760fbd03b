// The pipeline wire protocol between ring neighbours, used by PipelineStep / follow() (pipeline_step.h):
// 4-int headers, hidden states, int payloads and sampled ids, plus the prefill steps built on them
// (embed-and-send on rank 0, receive-run-forward on the others).
#pragma once

#include <atomic>
#include <optional>
#include <vector>

#include "engine/sampler.h"
#include "mlx/distributed/distributed.h"
#include "model/model.h"

namespace k2 {

// Every hop r -> r+1 carries one header; kind says what follows it. `token` carries the sequence's slot
// (each rank keeps one KV cache per slot), so that several sequences can be in flight.
struct StageHeader {
  int kind = 0, n = 0, token = 0, flags = 0;
};

enum StageKind {
  kPrefill = 1,   // slot `token`: n prompt tokens' hidden state [1, n, hidden] follows
  kDecode = 2,    // n rows: 2n ints (slots, then fed ids) and the hidden state [n, 1, hidden] follow; the last
                  // rank answers with the n sampled ids
  kEnd = 3,       // slot `token`'s sequence ends; n - 1 is its last emitted id that was never fed (-1: none)
  kBegin = 4,     // slot `token` starts an n-token prompt; every rank trims that slot's cache to `flags`
                  // positions; sampling params and prompt ids follow
  kShutdown = 5,  // rank 0 is leaving; the others leave too
};

enum StageFlags {
  kLastChunk = 1,   // prefill: the prompt's last chunk
  kWantAck = 2,     // prefill: the last rank answers -1 once the chunk is done (no overlap)
  kLogitsAll = 8,   // prefill: the last rank keeps the logits of every position (logits job)
  kCancelled = 16,  // end: the client went away
  kLogitsLast = 32, // prefill with kLastChunk: the last rank keeps the logits of the last position (logits job)
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
  mlx::core::array recv_hidden(int rows, int n);  // [rows, n, hidden], lazy
  void send_ints(const std::vector<int>& v);
  std::vector<int> recv_ints(int n);
  void send_to_first(const std::vector<int>& ids);  // last rank -> rank 0 (sampled ids, acknowledgements)
  std::vector<int> recv_from_last(int n);           // rank 0 <- last rank

  // Checks that neighbours hold adjacent ranges with the same hidden size and dtype (a message goes
  // once around the ring); doubles as the "everyone has loaded" barrier. Throws InputError on a mismatch.
  void handshake();
  // Throws InputError for an empty prompt, ids outside the vocabulary or a prompt over the context.
  void check_ids(const std::vector<int>& ids) const;

  // Rank 0: embeds `ids` [1, L], runs this stage on `cache` and sends `h` plus the hidden state.
  void send_first(const mlx::core::array& ids, KvCache& cache, const StageHeader& h);
  // Other ranks: receives the prefill chunk announced by `h`, runs this stage on `cache` and (except on the
  // last rank) forwards header and result. Returns the stage output [1, h.n, hidden] (lazy).
  mlx::core::array run_received(const StageHeader& h, KvCache& cache);
  // Evaluates arrays that depend on data from the previous rank (named as the wait for crash messages).
  void eval_from_prev(const std::vector<mlx::core::array>& arrays);

  // The neighbour this rank is blocked on (-1: none) — read by a crash handler to name a lost peer.
  int waiting_on() const { return waiting_on_.load(); }

 private:
  const Model& stage_;
  mlx::core::distributed::Group group_;
  int rank_, size_, next_, prev_, last_;
  std::atomic<int> waiting_on_{-1};
};

}  // namespace k2
