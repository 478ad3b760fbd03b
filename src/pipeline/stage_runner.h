// One rank of a one-shot layer-pipeline job (one prompt, then exit): runs its stage (a Model holding a
// slice of the layers) and passes hidden states to the next rank and sampled tokens from the last rank
// back to the first through a StageLink (the wire protocol). Owns the job's flow, not the launch.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <vector>

#include "engine/generate.h"
#include "engine/sampler.h"
#include "mlx/distributed/distributed.h"
#include "model/model.h"
#include "pipeline/stage_link.h"

namespace k2 {

struct PipelineOptions {
  PrefillChunking prefill;  // how prompts are cut into chunks (default: sized to memory)
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

  int rank() const { return link_.rank(); }
  int size() const { return link_.size(); }
  bool is_first() const { return link_.is_first(); }
  bool is_last() const { return link_.is_last(); }

  // Checks that neighbours hold adjacent ranges with the same hidden size and dtype (a message goes
  // once around the ring); doubles as the "everyone has loaded" barrier. Throws InputError on a mismatch.
  void handshake() { link_.handshake(); }

  // Every rank calls this with the same arguments; the last rank samples, rank 0 embeds, and every
  // rank returns the same token stream. on_token runs on rank 0 only; returning false cancels.
  PipelineResult generate(const std::vector<int>& prompt, const SamplingParams& sampling, const GenerateOptions& options,
                          const std::function<bool(int)>& on_token);

  // Logits for `ids` (every position or the last), computed through the stages; set on the last rank.
  PipelineResult logits(const std::vector<int>& ids, bool all_positions);

  // The neighbour this rank is blocked on (-1: none) — read by a crash handler to name a lost peer.
  int waiting_on() const { return link_.waiting_on(); }
  const StageLink& link() const { return link_; }

 private:
  PipelineResult generate_first(const std::vector<int>& prompt, const GenerateOptions& options,
                                const std::function<bool(int)>& on_token);
  PipelineResult follow(const std::vector<int>& prompt, const SamplingParams& sampling, bool sample);
  void prefill_first(const std::vector<int>& ids, bool logits_all);

  const Model& stage_;
  PipelineOptions options_;
  StageLink link_;
  KvCache cache_;
};

}  // namespace k2
