// Unit tests for model/runtime_memory (the prefill memory model) and engine/prefill_chunk's use of it, on the
// real Kimi-K2 config: the KV cache against kimi-k2-spec.md's per-token figure, the blocked CPU attention with
// no [chunk, context] term, MLX's SDPA path with three [heads, chunk, context] buffers, chunk sizing per path.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/prefill_chunk.h"
#include "model/config.h"
#include "model/runtime_memory.h"

#ifndef K2_SHARED_DATA_DIR
#error "K2_SHARED_DATA_DIR must point at shared/data"
#endif

namespace {
namespace fs = std::filesystem;

k2::ModelConfig kimi() {
  std::ifstream in(fs::path(K2_SHARED_DATA_DIR) / "kimi-k2-instruct.config.json");
  if (!in) throw std::runtime_error("test data missing: kimi-k2-instruct.config.json");
  return k2::parse_model_config(nlohmann::json::parse(in), "kimi-k2-instruct.config.json");
}

TEST(RuntimeMemory, KvCacheIsRoundedToTheGrowthStep) {
  const k2::ModelConfig c = kimi();
  // 576 elements (512 latent + 64 rope) per layer and position; 40,000 positions round up to 40,192.
  const auto m = k2::estimate_runtime_memory(c, 61, 40000, 512, {2, false}, false);
  EXPECT_EQ(m.kv_cache, size_t{40192} * 576 * 2 * 61);
  // While the last chunk grows the cache, one layer's previous cache (39,488 -> 39,680 positions) is alive;
  // none when the cache was reserved for the whole prompt.
  EXPECT_EQ(m.kv_growth, size_t{39680} * 576 * 2);
  EXPECT_EQ(k2::estimate_runtime_memory(c, 61, 40000, 512, {2, false}, false, 1, true).kv_growth, 0u);
}

TEST(RuntimeMemory, BlockedAttentionHasNoChunkByContextTerm) {
  const k2::ModelConfig c = kimi();
  const size_t H = 64, L = 512;
  for (int S : {8192, 40000}) {
    const auto blocked = k2::estimate_runtime_memory(c, 1, S, L, {4, true}, false);
    const auto sdpa = k2::estimate_runtime_memory(c, 1, S, L, {4, false}, false);
    // SDPA: three [H, L, S] float32 buffers beside the keys and values expanded per head (64 x (128 + 128)).
    EXPECT_GE(sdpa.workspace, 3 * H * L * S * 4 + H * S * 256 * 4) << S;
    // Blocked: the expanded keys / values plus buffers that grow with the chunk only (the MoE's ~243K elements
    // per token: 8 experts x (3 x 7168 + 3 x 2048) and the rest).
    EXPECT_GE(blocked.workspace, H * S * 256 * 4);
    EXPECT_LT(blocked.workspace, H * S * 256 * 4 + L * 300000 * 4) << "per-chunk buffers are O(chunk)";
  }
  // The logits: one float32 row, or every position's.
  const auto one = k2::estimate_runtime_memory(c, 1, 1000, 100, {4, true}, true, 1);
  const auto all = k2::estimate_runtime_memory(c, 1, 1000, 100, {4, true}, true, 1000);
  EXPECT_EQ(all.workspace - one.workspace, size_t{999} * 163840 * 4);
}

TEST(RuntimeMemory, ChunkSizingFollowsTheAttentionPath) {
  const k2::ModelConfig c = kimi();
  const k2::PrefillChunking budget{0, size_t{1} << 30};  // 1 GiB for one chunk's buffers
  // SDPA: three [64, L, 40000] float32 buffers must fit 1 GiB, so L is small.
  const int sdpa = k2::prefill_chunk_size(c, {4, false}, 40000, budget);
  EXPECT_GE(sdpa, k2::kMinAutoPrefillChunk);
  EXPECT_LT(sdpa, 64);
  // Blocked: the expanded keys / values (64 x 40000 x 256 x 4 B = 2.6 GB) exceed 1 GiB whatever the chunk, so
  // the sizing falls back to the smallest chunk; at 8K positions (0.54 GB) chunks grow far beyond SDPA's.
  EXPECT_EQ(k2::prefill_chunk_size(c, {4, true}, 40000, budget), k2::kMinAutoPrefillChunk);
  EXPECT_GT(k2::prefill_chunk_size(c, {4, true}, 8192, budget), 4 * k2::prefill_chunk_size(c, {4, false}, 8192, budget));
  // The predicted peak adds the weights to the cache and the chunk buffers.
  const auto p = k2::predict_prefill_peak(c, 1000, {4, true}, 61, true, 8192, budget);
  EXPECT_EQ(p.total(), 1000 + p.runtime.kv_cache + p.runtime.kv_growth + p.runtime.workspace);
  EXPECT_EQ(p.chunk, k2::prefill_chunk_size(c, {4, true}, 8192, budget));
}

}  // namespace
