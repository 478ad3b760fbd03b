// One rank of a layer pipeline: runs its stage (a Model holding a slice of the layers) and passes
// hidden states to the next rank and sampled tokens from the last rank back to the first, only through
// mlx::core::distributed send/recv between ring neighbours. Owns the wire protocol, not the launch.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <vector>

#include "engine/generate.h"
#include "engine/sampler.h"
#include "mlx/distributed/distributed.h"
#include "model/model.h"

namespace k2 {

struct PipelineOptions {
  int prefill_chunk = 512;  // tokens per prefill chunk (0 = the whole prompt at once)
  // Send the next prefill chunk while later stages still work on the previous one. Off: the first
  // stage waits for the last stage to finish each chunk (the sequential baseline the bench compares).
  bool overlap = true;
};

struct PipelineResult {
  std::vector<int> tokens;     // emitted ids; identical on every rank
  std::vector<int> sampled;    // last rank: every id it sampled (incl. a final stop token)
  std::string finish_reason;   // stop / length / cancelled
  int prompt_tokens = 0;
  double prefill_seconds = 0;  // first rank: until the first token is back; other ranks: busy time
  double decode_seconds = 0;
  std::optional<mlx::core::array> logits;  // logits task, last rank: [vocab] or [n, vocab] float32
};

class StageRunner {
 public:
  // `stage` is this rank's slice: rank 0 must hold the embedding, the last rank the norm and lm_head.
  StageRunner(const Model& stage, mlx::core::distributed::Group group, PipelineOptions options);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_first() const { return rank_ == 0; }
  bool is_last() const { return rank_ == size_ - 1; }

  // Checks that neighbours hold adjacent ranges with the same hidden size and dtype (a message goes
  // once around the ring); doubles as the "everyone has loaded" barrier. Throws InputError on a mismatch.
  void handshake();

  // Every rank calls this with the same arguments; the last rank samples, rank 0 embeds, and every
  // rank returns the same token stream. on_token runs on rank 0 only; returning false cancels.
  PipelineResult generate(const std::vector<int>& prompt, const SamplingParams& sampling, const GenerateOptions& options,
                          const std::function<bool(int)>& on_token);

  // Logits for `ids` (every position or the last), computed through the stages; set on the last rank.
  PipelineResult logits(const std::vector<int>& ids, bool all_positions);

  // The neighbour this rank is blocked on (-1: none) — read by a crash handler to name a lost peer.
  int waiting_on() const { return waiting_on_.load(); }

 private:
  struct Header {
    int kind = 0, n = 0, token = 0, flags = 0;
  };
  enum Kind { kPrefill = 1, kDecode = 2, kStop = 3 };
  enum Flags { kLastChunk = 1, kWantAck = 2, kEmitted = 4, kLogitsAll = 8, kCancelled = 16 };

  void send_header(const Header& h);
  Header recv_header();
  void send_hidden(const mlx::core::array& h);
  mlx::core::array recv_hidden(int n);
  void send_token(int id);  // last rank -> rank 0
  int recv_token();         // rank 0 <- last rank
  void check_ids(const std::vector<int>& ids) const;

  PipelineResult generate_first(const std::vector<int>& prompt, const GenerateOptions& options,
                                const std::function<bool(int)>& on_token);
  PipelineResult follow(const std::vector<int>& prompt, const SamplingParams& sampling, bool sample);
  void prefill_first(const std::vector<int>& ids, bool logits_all);

  const Model& stage_;
  mlx::core::distributed::Group group_;
  PipelineOptions options_;
  int rank_, size_, next_, prev_, last_;
  KvCache cache_;
  std::atomic<int> waiting_on_{-1};
};

}  // namespace k2
