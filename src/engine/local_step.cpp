// LocalStep: prompt-cache leases per sequence, cache-only prefill chunks, and the batched decode whose
// logits are sampled row by row with each sequence's own sampler.
#include "engine/local_step.h"

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

LocalStep::LocalStep(const Model& model, PrefillChunking prefill, PromptCacheOptions prompt_cache)
    : model_(model), prefill_(prefill), cache_(model, prompt_cache) {
  if (!model.has_embedding() || !model.has_head())
    throw Error("a single-machine engine needs a model with the embedding and the lm_head loaded");
}

LocalStep::Running& LocalStep::get(int seq) {
  auto it = running_.find(seq);
  if (it == running_.end()) throw Error(fmt::format("engine: no running sequence {}", seq));
  return it->second;
}

const LocalStep::Running& LocalStep::get(int seq) const { return const_cast<LocalStep*>(this)->get(seq); }

int LocalStep::prefill_chunk(int prompt_tokens) const {
  return prefill_chunk_size(model_.config(), model_.dtype(), prompt_tokens, prefill_);
}

int LocalStep::begin(int seq, const std::vector<int>& prompt, const SamplingParams& sampling) {
  if (running_.count(seq)) throw Error(fmt::format("engine: sequence {} is already running", seq));
  PromptCache::Lease lease = cache_.acquire(prompt);
  const int reused = lease.reused;
  // Refuse a prompt that cannot fit before any of it is computed (MLX on the CPU crashes on a failed malloc).
  const int n = static_cast<int>(prompt.size());
  check_prefill_memory(model_.config(), model_.dtype(), model_.last_layer() - model_.first_layer(), reused, n - reused,
                       prefill_chunk(n));
  running_.emplace(seq, Running{std::move(lease.session), SequenceSampler(sampling, prompt)});
  return reused;
}

void LocalStep::prefill(int seq, const std::vector<int>& ids) {
  get(seq).session->extend(ids, PrefillChunking{static_cast<int>(ids.size()), 0});
}

std::optional<TokenLogprobs> LocalStep::take_logprobs(int seq) {
  Running& r = get(seq);
  if (!r.sampler.wants_logprobs()) return std::nullopt;
  return r.sampler.take_logprobs();
}

std::vector<TokenLogprobs> LocalStep::score_prompt(const std::vector<int>& prompt, int top_n) {
  // Scored on a fresh session in one all-positions prefill, as `k2mlx logits --all-positions` computes them.
  const int n = static_cast<int>(prompt.size());
  Session scoring(model_);
  mx::array all = scoring.prefill(prompt, PrefillChunking{prefill_chunk(n), 0}, true);  // [n, vocab]
  return sequence_logprobs(mx::slice(all, {0, 0}, {n - 1, all.shape(1)}),
                           std::vector<int>(prompt.begin() + 1, prompt.end()), top_n);
}

std::vector<int> LocalStep::decode(const std::vector<DecodeRow>& rows) {
  const int B = static_cast<int>(rows.size());
  std::vector<int> ids(B);
  std::vector<KvCache*> caches(B);
  for (int b = 0; b < B; ++b) {
    ids[b] = rows[b].token;
    caches[b] = &get(rows[b].seq).session->cache();
  }
  const int vocab = model_.config().vocab_size;
  mx::array h = model_.run_layers(model_.embed(mx::array(ids.data(), mx::Shape{B, 1}, mx::int32)), caches);  // [B, 1, hidden]
  mx::array logits = model_.head(h);                                                                        // [B, 1, vocab]
  std::vector<mx::array> tokens;
  tokens.reserve(B);
  for (int b = 0; b < B; ++b) {
    mx::array row = mx::reshape(mx::slice(logits, {b, 0, 0}, {b + 1, 1, vocab}), {vocab});  // [vocab]
    tokens.push_back(get(rows[b].seq).sampler.next(row, rows[b].token));
  }
  mx::eval(tokens);
  std::vector<int> out(B);
  for (int b = 0; b < B; ++b) out[b] = static_cast<int>(tokens[b].item<uint32_t>());
  return out;
}

void LocalStep::end(int seq, SequenceEnd how) {
  auto it = running_.find(seq);
  if (it == running_.end()) return;
  std::unique_ptr<Session> session = std::move(it->second.session);
  running_.erase(it);
  if (!how.keep || how.held.empty()) return;
  session->trim_to(static_cast<int>(how.held.size()));
  cache_.release(std::move(session), std::move(how.held));
}

int LocalStep::length(int seq) const { return get(seq).session->length(); }

size_t LocalStep::sequence_bytes(int seq) const {
  auto it = running_.find(seq);
  return it == running_.end() ? 0 : it->second.session->cache().nbytes();
}

}  // namespace k2
