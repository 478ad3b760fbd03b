// How a prompt is cut into prefill chunks: the one function that sizes chunks from the model config and a
// workspace budget (used by Session, the serving worker and the pipeline ranks alike), the check that a
// prefill fits in the memory MLX may still use, and the translation of allocation failures into InputError.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "mlx/dtype.h"
#include "model/config.h"
#include "model/runtime_memory.h"

namespace k2 {

class Model;

struct PrefillChunking {
  int chunk = 0;      // tokens per chunk; 0 = sized to `budget`
  size_t budget = 0;  // bytes for one chunk's transient buffers; 0 = an eighth of MLX's memory limit
};

// Largest chunks allowed when sizing to a budget (mlx-lm's default prefill_step_size): bigger ones no
// longer speed prefill up, and they delay cancellation between chunks.
inline constexpr int kMaxAutoPrefillChunk = 2048;
// Smallest chunk sizing to a budget goes down to (a smaller one would still not fit a tiny budget).
inline constexpr int kMinAutoPrefillChunk = 32;

// What a model's prefill allocates per element and which attention path it takes (mla_attention's test):
// the blocked CPU kernel when its CPU kernels are attached, activations are float32 and the default device
// is the CPU; MLX's SDPA otherwise.
ActivationSpec activations_of(const Model& model);
ActivationSpec activations_for(mlx::core::Dtype dtype, bool cpu_kernels);

// Tokens per prefill chunk for a prompt that brings the context to `context` positions: `p.chunk` when
// set, else the largest chunk whose workspace (estimate_runtime_memory, with the lm_head) fits the budget.
// Depends only on the config, the activation dtype and `context`, so every rank of a pipeline and every
// runner cuts the same prompt the same way.
int prefill_chunk_size(const ModelConfig& config, const ActivationSpec& activations, int context,
                       const PrefillChunking& p);

// The predicted peak of prefilling `tokens` tokens into an empty cache of `layers` layers, reserved for the
// whole prompt as Session and LocalStep reserve it: the bound weights
// (footprint.h: bound_weight_bytes, or a loaded model's nbytes), the cache and the transient buffers of the
// last chunk, at the chunk size prefill_chunk_size picks. `all_positions`: the logits of every position are
// kept (and concatenated at the end) instead of the last one's.
struct PrefillPeak {
  int chunk = 0;
  size_t weights = 0;
  RuntimeMemory runtime;
  size_t total() const { return weights + runtime.total(); }
};
PrefillPeak predict_prefill_peak(const ModelConfig& config, size_t weight_bytes, const ActivationSpec& activations,
                                 int layers, bool has_head, int tokens, const PrefillChunking& p,
                                 bool all_positions = false);

// The budget `p` stands for, in bytes (resolves 0 = automatic).
size_t prefill_budget_bytes(const PrefillChunking& p);

// Throws InputError, before anything is allocated, when prefilling `new_tokens` more tokens (chunks of
// `chunk`) into a cache that holds `cached` positions of `layers` layers needs more than MLX may still
// allocate (its memory limit, or the address-space limit when lower, minus the memory in use): says how
// much is needed and what to change. MLX on the CPU crashes instead of throwing when malloc fails.
void check_prefill_memory(const ModelConfig& config, const ActivationSpec& activations, int layers, int cached,
                          int new_tokens, int chunk);

// Runs `body`; an allocation failure inside it (std::bad_alloc, or MLX's "Unable to allocate") becomes an
// InputError that names `what` and says what to change, instead of an internal error.
void with_memory_errors(const std::string& what, const std::function<void()>& body);

}  // namespace k2
