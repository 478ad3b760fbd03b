// Token selection from logits: greedy, temperature, top-k, top-p, min-p, repetition penalty, with a
// seeded random stream so a fixed seed gives a fixed continuation; optionally constrained to begin with
// one of given token sequences, and keeping each drawn token's log-probabilities. Runs as MLX ops (no
// host copy of the vocabulary-sized logits).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "mlx/array.h"

namespace k2 {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy (argmax)
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // 1 = off (HF/CTRL rule: positive logits / p, negative · p)
  int repetition_context = 64;      // how many recent tokens the penalty looks at
  uint64_t seed = 0;
  // The answer must begin with one of these token sequences (tool_choice "required": one per declared
  // function): until one is complete, only tokens that continue one of them can be drawn. Empty = free.
  std::vector<std::vector<int>> forced_choices;
  int logprobs = -1;  // >= 0: keep each drawn token's log-probability and its `logprobs` most likely alternatives

  // Throws InputError naming the parameter when a value is out of range.
  void validate() const;
};

// A drawn token's log-probability under the model (log-softmax of the raw logits, before penalty,
// temperature and truncation, as OpenAI's and vLLM's logprobs are) and the most likely alternatives.
struct TokenLogprobs {
  int token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int, float>> top;  // (id, logprob), most likely first
};

// logits [vocab] (any float dtype); evaluates.
TokenLogprobs token_logprobs(const mlx::core::array& logits, int token, int top_n);
// logits [n, vocab]: row i scores tokens[i] (a prompt's logits against the prompt shifted by one); evaluates.
std::vector<TokenLogprobs> sequence_logprobs(const mlx::core::array& logits, const std::vector<int>& tokens, int top_n);

class Sampler {
 public:
  explicit Sampler(SamplingParams params);
  // logits [vocab] (any float dtype); recent [n] int32 token ids for the repetition penalty (may be
  // empty). Returns a scalar uint32 array (lazy).
  mlx::core::array sample(const mlx::core::array& logits, const std::optional<mlx::core::array>& recent);
  const SamplingParams& params() const { return params_; }
  // A forced choice is still open: each draw is read back at once to narrow the next one.
  bool constrained() const { return constrained_; }
  // With params.logprobs >= 0: the log-probabilities of the oldest drawn token not yet taken (tokens are
  // taken in the order they were drawn; evaluates). Throws Error when there is none.
  TokenLogprobs take_logprobs();

 private:
  mlx::core::array constrain(const mlx::core::array& logits);
  mlx::core::array draw(const mlx::core::array& raw, const std::optional<mlx::core::array>& recent);
  struct Pending {
    mlx::core::array token, logprob, top_ids, top_logprobs;
  };
  SamplingParams params_;
  mlx::core::array key_;
  std::deque<Pending> pending_;
  std::vector<int> drawn_;  // tokens drawn while forced_choices constrain the answer
  bool constrained_ = false;
};

// Recent tokens for the repetition penalty: the prompt's tail, then every id fed back.
class RecentTokens {
 public:
  RecentTokens(const SamplingParams& p, const std::vector<int>& prompt);
  void push(int id);
  std::optional<mlx::core::array> array() const;  // [n] int32, or none when the penalty is off
  bool active() const { return context_ > 0; }

 private:
  int context_;
  std::deque<int> ids_;
};

// One sequence's sampling state: its Sampler (seeded stream, forced choices, logprobs) and penalty window.
// next() is called once per decode step with the id that was fed; the first call's id is the prompt's last
// token, already in the window.
class SequenceSampler {
 public:
  SequenceSampler(const SamplingParams& p, const std::vector<int>& prompt) : sampler_(p), recent_(p, prompt) {}
  mlx::core::array next(const mlx::core::array& logits, int fed);  // logits [vocab] -> uint32 scalar (lazy)
  // The next draw depends on the fed id's value on the host (the penalty window) or reads its own draw
  // back (forced choices): next() cannot be given a fed id that is still being computed.
  bool needs_fed_ids() const { return recent_.active() || sampler_.constrained(); }
  bool wants_logprobs() const { return sampler_.params().logprobs >= 0; }
  TokenLogprobs take_logprobs() { return sampler_.take_logprobs(); }

 private:
  Sampler sampler_;
  RecentTokens recent_;
  bool first_ = true;
};

// The filters alone, on float32 logits [vocab] (exposed for unit tests). Filtered-out entries become -inf.
mlx::core::array apply_top_k(const mlx::core::array& logits, int k);
mlx::core::array apply_top_p(const mlx::core::array& logits, float p);
mlx::core::array apply_min_p(const mlx::core::array& logits, float min_p);
mlx::core::array apply_repetition_penalty(const mlx::core::array& logits, const mlx::core::array& recent,
                                          float penalty);

}  // namespace k2
