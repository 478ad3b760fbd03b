// Prefill chunk sizing from estimate_runtime_memory (the same estimate `inspect` and `plan` print), the
// memory check before a prefill, and the mapping of allocation failures to InputError.
#include "engine/prefill_chunk.h"

#include <algorithm>
#include <new>
#include <string_view>

#include <sys/resource.h>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"
#include "model/footprint.h"
#include "model/model.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

std::string gib(double bytes) { return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024.0 * 1024.0)); }

size_t workspace(const ModelConfig& c, const ActivationSpec& a, int context, int chunk) {
  // One layer is enough: the workspace is that of the widest single layer (plus the lm_head).
  return estimate_runtime_memory(c, 1, context, chunk, a, /*has_head=*/true).workspace;
}

// What this process may allocate: MLX's memory limit (0.8 of RAM on the CPU backend, the recommended working
// set on Metal), or less under an address-space limit (ulimit -v), where MLX itself would only crash.
size_t memory_limit() {
  size_t limit = mx::get_memory_limit();
  struct rlimit rl {};
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    limit = std::min(limit, static_cast<size_t>(rl.rlim_cur));
  return limit;
}

}  // namespace

ActivationSpec activations_for(mx::Dtype dtype, bool cpu_kernels) {
  return {mx::size_of(dtype), cpu_kernels && dtype == mx::float32 && mx::default_device() == mx::Device::cpu};
}

ActivationSpec activations_of(const Model& m) {
  const auto& layers = m.weights().layers;
  return activations_for(m.dtype(), !layers.empty() && layers.front().attn.cpu_kernels != nullptr);
}

size_t prefill_budget_bytes(const PrefillChunking& p) {
  if (p.budget > 0) return p.budget;
  // An eighth of what may be allocated: the weights and the KV cache need the rest.
  return std::max<size_t>(memory_limit() / 8, size_t{64} << 20);
}

int prefill_chunk_size(const ModelConfig& c, const ActivationSpec& act, int context, const PrefillChunking& p) {
  if (p.chunk < 0) throw InputError(fmt::format("prefill chunk must be >= 0 (0 = sized to memory), got {}", p.chunk));
  if (p.chunk > 0) return p.chunk;
  const size_t budget = prefill_budget_bytes(p);
  context = std::max(context, 1);
  const int cap = std::min(kMaxAutoPrefillChunk, context);
  if (cap <= kMinAutoPrefillChunk || workspace(c, act, context, cap) <= budget) return cap;
  // The workspace grows with the chunk: the largest chunk that fits, found by bisection.
  int lo = kMinAutoPrefillChunk, hi = cap;  // ws(lo) may exceed the budget: then lo is the answer anyway
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (workspace(c, act, context, mid) <= budget ? lo : hi) = mid;
  }
  return lo;
}

PrefillPeak predict_prefill_peak(const ModelConfig& c, size_t weight_bytes, const ActivationSpec& act, int layers,
                                 bool has_head, int tokens, const PrefillChunking& p, bool all_positions) {
  PrefillPeak r;
  tokens = std::max(tokens, 1);
  r.chunk = prefill_chunk_size(c, act, tokens, p);
  r.weights = weight_bytes;
  // Every position's logits: the rows of the chunks so far plus their concatenation at the end.
  const int rows = all_positions ? 2 * tokens : 1;
  r.runtime = estimate_runtime_memory(c, layers, tokens, std::min(r.chunk, tokens), act, has_head, rows,
                                      /*reserved_cache=*/true);
  return r;
}

void check_prefill_memory(const ModelConfig& c, const ActivationSpec& act, int layers, int cached, int new_tokens,
                          int chunk) {
  const int context = cached + new_tokens;
  const size_t ws = workspace(c, act, context, std::max(1, std::min(chunk, new_tokens)));
  const size_t kv_now = estimate_runtime_memory(c, layers, std::max(cached, 1), 1, act, false).kv_cache;
  const RuntimeMemory end = estimate_runtime_memory(c, layers, context, std::max(1, std::min(chunk, new_tokens)), act,
                                                    false);
  const size_t need = ws + end.kv_growth + (end.kv_cache > kv_now ? end.kv_cache - kv_now : 0);
  const size_t limit = memory_limit(), used = mx::get_active_memory();
  const size_t free = limit > used ? limit - used : 0;
  if (need <= free) return;
  throw InputError(fmt::format(
      "prefilling {} tokens (context {}) in chunks of {} needs about {} ({} for one chunk's attention and "
      "expert buffers, {} more KV cache), but only {} of the {} this process may use is free; use a smaller "
      "--prefill-chunk (0 = sized to memory) or --prefill-memory-mib, or a shorter prompt"
      " (memory that an address-space limit leaves counts too: ulimit -v)",
      new_tokens, context, chunk, gib(need), gib(ws), gib(need - ws), gib(free), gib(limit)));
}

void with_memory_errors(const std::string& what, const std::function<void()>& body) {
  auto fail = [&](const char* detail) {
    throw InputError(fmt::format("{}: out of memory ({}); use a smaller --prefill-chunk or --prefill-memory-mib, "
                                 "a shorter prompt, or fewer layers per machine",
                                 what, detail));
  };
  try {
    body();
  } catch (const std::bad_alloc&) {
    fail("std::bad_alloc");
  } catch (const std::runtime_error& e) {
    // MLX reports a failed allocation as "[malloc] Unable to allocate N bytes." (any backend).
    if (std::string_view(e.what()).find("Unable to allocate") == std::string_view::npos) throw;
    fail(e.what());
  }
}

}  // namespace k2
