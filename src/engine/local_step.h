// The generation step on a whole model in this process: each sequence holds a Session (its KV cache, leased
// from the PromptCache so that prompts are reused) and a SequenceSampler; decode runs every row in one
// batched forward (Model::run_layers over per-sequence caches), started with async_eval so that the loop can
// build the next step from its still-lazy ids (chained rows) while it runs.
#pragma once

#include <map>
#include <memory>

#include "engine/model_step.h"
#include "engine/prefill_chunk.h"
#include "engine/prompt_cache.h"
#include "engine/session.h"

namespace k2 {

class LocalStep : public ModelStep {
 public:
  LocalStep(const Model& model, PrefillChunking prefill, PromptCacheOptions prompt_cache);

  int begin(int seq, const std::vector<int>& prompt, const SamplingParams& sampling) override;
  void prefill(int seq, const std::vector<int>& ids) override;
  std::vector<int> decode(const std::vector<DecodeRow>& rows) override;
  std::unique_ptr<LaunchedDecode> launch(const std::vector<DecodeRow>& rows) override;
  bool chains(int seq) const override;
  std::optional<TokenLogprobs> take_logprobs(int seq) override;
  std::vector<TokenLogprobs> score_prompt(const std::vector<int>& prompt, int top_n) override;
  void end(int seq, SequenceEnd how) override;

  int length(int seq) const override;
  int max_positions() const override { return model_.config().max_position_embeddings; }
  int vocab_size() const override { return model_.config().vocab_size; }
  int prefill_chunk(int prompt_tokens) const override;
  size_t cache_entries() const override { return cache_.size(); }
  size_t cache_bytes() const override { return cache_.bytes(); }

  // KV bytes the sequence's cache has allocated (for statistics; 0 for an unknown sequence).
  size_t sequence_bytes(int seq) const;

 private:
  struct Running {
    std::unique_ptr<Session> session;
    SequenceSampler sampler;
    std::optional<mlx::core::array> last;  // the id its latest launched decode samples (uint32 scalar, maybe lazy)
  };
  Running& get(int seq);
  const Running& get(int seq) const;

  const Model& model_;
  PrefillChunking prefill_;
  PromptCache cache_;
  std::map<int, Running> running_;
};

}  // namespace k2
