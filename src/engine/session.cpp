// Session: prefill in chunks (cache evaluated and allocator cache released between chunks, as
// mlx-lm's generate_step does) and single-token decode on the latent cache.
#include "engine/session.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

Session::Session(const Model& model) : model_(model), cache_(model.make_cache()) {
  if (!model.has_embedding() || !model.has_head())
    throw Error("a single-machine session needs a model with the embedding and the lm_head loaded");
}

void Session::check_capacity(size_t extra) const {
  const size_t limit = static_cast<size_t>(model_.config().max_position_embeddings);
  if (static_cast<size_t>(length()) + extra > limit)
    throw InputError(fmt::format("{} tokens exceed the model's context of {} (max_position_embeddings)",
                                 length() + extra, limit));
}

mx::array Session::forward(const mx::array& ids) {
  return model_.head(model_.run_layers(model_.embed(ids), cache_));
}

void Session::check_ids(const std::vector<int>& ids) const {
  if (ids.empty()) throw InputError("prefill needs at least one token");
  check_capacity(ids.size());
  const int vocab = model_.config().vocab_size;
  for (int id : ids)
    if (id < 0 || id >= vocab) throw InputError(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
}

int Session::chunk_for(size_t new_tokens, const PrefillChunking& chunking) const {
  const int n = static_cast<int>(new_tokens);
  const int step = prefill_chunk_size(model_.config(), activations_of(model_), length() + n, chunking);
  check_prefill_memory(model_.config(), activations_of(model_), model_.last_layer() - model_.first_layer(), length(), n,
                       step);
  return step;
}

void Session::fill(const int* ids, int n, int step) {
  cache_.reserve(length() + n + 1);  // + 1: the decode step that usually follows a prefill
  with_memory_errors(fmt::format("prefill of {} tokens in chunks of {}", n, step), [&] {
    for (int start = 0; start < n; start += step) {
      const int len = std::min(step, n - start);
      mx::array chunk_ids(ids + start, mx::Shape{1, len}, mx::int32);
      model_.run_layers(model_.embed(chunk_ids), cache_);
      mx::eval(cache_.state());
      mx::clear_cache();
    }
  });
}

void Session::extend(const std::vector<int>& ids, const PrefillChunking& chunking) {
  if (ids.empty()) return;
  check_ids(ids);
  fill(ids.data(), static_cast<int>(ids.size()), chunk_for(ids.size(), chunking));
}

mx::array Session::prefill(const std::vector<int>& ids, const PrefillChunking& chunking, bool all_positions) {
  check_ids(ids);
  const int n = static_cast<int>(ids.size()), vocab = model_.config().vocab_size;
  const int step = chunk_for(ids.size(), chunking);  // from the whole prompt, whichever part runs in chunks
  if (all_positions) {
    std::vector<mx::array> all;
    cache_.reserve(length() + n);
    with_memory_errors(fmt::format("prefill of {} tokens in chunks of {}", n, step), [&] {
      for (int start = 0; start < n; start += step) {
        const int len = std::min(step, n - start);
        mx::array chunk_ids(ids.data() + start, mx::Shape{1, len}, mx::int32);
        all.push_back(mx::reshape(forward(chunk_ids), {len, vocab}));  // [len, vocab]
        mx::eval(all.back());
        mx::clear_cache();
      }
    });
    return all.size() == 1 ? all.front() : mx::concatenate(all, 0);
  }
  // All but the last token only fill the cache; the last token then runs as a decode step, which yields the
  // logits (as mlx-lm's generate_step does).
  fill(ids.data(), n - 1, step);
  return decode_step(ids.back());
}

mx::array Session::decode_step(const mx::array& token) {
  check_capacity(1);
  mx::array ids = mx::reshape(mx::astype(token, mx::int32), {1, 1});
  return mx::reshape(forward(ids), {model_.config().vocab_size});
}

mx::array Session::decode_step(int token) {
  const int vocab = model_.config().vocab_size;
  if (token < 0 || token >= vocab)
    throw InputError(fmt::format("token id {} is outside the vocabulary [0, {})", token, vocab));
  return decode_step(mx::array(token, mx::int32));
}

}  // namespace k2
