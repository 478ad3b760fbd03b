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
  return prefill_chunk_size(model_.config(), activations_of(model_), prompt_tokens, prefill_);
}

int LocalStep::begin(int seq, const std::vector<int>& prompt, const SamplingParams& sampling) {
  if (running_.count(seq)) throw Error(fmt::format("engine: sequence {} is already running", seq));
  PromptCache::Lease lease = cache_.acquire(prompt);
  const int reused = lease.reused;
  // Refuse a prompt that cannot fit before any of it is computed (MLX on the CPU crashes on a failed malloc).
  const int n = static_cast<int>(prompt.size());
  check_prefill_memory(model_.config(), activations_of(model_), model_.last_layer() - model_.first_layer(), reused, n - reused,
                       prefill_chunk(n));
  lease.session->cache().reserve(n + 1);  // one cache allocation for the prompt and the first token
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

namespace {

// The ids of a launch, evaluated in the background from the moment it was launched.
class LocalDecode : public LaunchedDecode {
 public:
  explicit LocalDecode(std::vector<mx::array> tokens) : tokens_(std::move(tokens)) {}
  std::vector<int> read() override {
    mx::eval(tokens_);
    std::vector<int> out(tokens_.size());
    for (size_t b = 0; b < tokens_.size(); ++b) out[b] = static_cast<int>(tokens_[b].item<uint32_t>());
    return out;
  }

 private:
  std::vector<mx::array> tokens_;  // [B] uint32 scalars
};

}  // namespace

bool LocalStep::chains(int seq) const {
  auto it = running_.find(seq);
  return it != running_.end() && !it->second.sampler.needs_fed_ids();
}

std::unique_ptr<LaunchedDecode> LocalStep::launch(const std::vector<DecodeRow>& rows) {
  const int B = static_cast<int>(rows.size());
  std::vector<KvCache*> caches(B);
  std::vector<int> known(B);
  std::vector<mx::array> fed;  // [1] int32 per row: a known id, or the lazy id of the sequence's previous launch
  bool any_chained = false;
  fed.reserve(B);
  for (int b = 0; b < B; ++b) {
    Running& r = get(rows[b].seq);
    caches[b] = &r.session->cache();
    if (rows[b].chained) {
      if (!r.last || r.sampler.needs_fed_ids())
        throw Error(fmt::format("engine: sequence {} cannot chain its decode row", rows[b].seq));
      fed.push_back(mx::reshape(mx::astype(*r.last, mx::int32), {1}));
      any_chained = true;
    } else {
      known[b] = rows[b].token;
      fed.push_back(mx::array(&rows[b].token, mx::Shape{1}, mx::int32));
    }
  }
  const int vocab = model_.config().vocab_size;
  mx::array ids = !any_chained ? mx::array(known.data(), mx::Shape{B, 1}, mx::int32)   // [B, 1]
                               : mx::reshape(B == 1 ? fed[0] : mx::concatenate(fed, 0), {B, 1});
  mx::array logits = model_.head(model_.run_layers(model_.embed(ids), caches));            // [B, 1, vocab]
  std::vector<mx::array> tokens;
  tokens.reserve(B);
  for (int b = 0; b < B; ++b) {
    Running& r = get(rows[b].seq);
    mx::array row = mx::reshape(mx::slice(logits, {b, 0, 0}, {b + 1, 1, vocab}), {vocab});  // [vocab]
    // A chained row's fed id is not known here; only a sampler that needs no fed ids gets one (checked above).
    tokens.push_back(r.sampler.next(row, rows[b].chained ? -1 : rows[b].token));
    r.last = tokens.back();
  }
  mx::async_eval(tokens);
  return std::make_unique<LocalDecode>(std::move(tokens));
}

std::vector<int> LocalStep::decode(const std::vector<DecodeRow>& rows) { return launch(rows)->read(); }

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
