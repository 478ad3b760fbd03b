// The latent KV cache: bytes per token for Kimi-K2's real dimensions (spec §3.3: 70,272 B at bf16
// for 61 layers), holding 40,000 positions at exactly that cost, and contents surviving growth.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mlx/mlx.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace mx = mlx::core;

namespace {

k2::ModelConfig kimi_config() {
  std::ifstream in(std::string(K2_SHARED_DATA_DIR) + "/kimi-k2-instruct.config.json");
  return k2::parse_model_config(nlohmann::json::parse(in), "kimi-k2-instruct.config.json");
}

}  // namespace

TEST(KvCache, KimiBytesPerTokenMatchesTheSpec) {
  const k2::ModelConfig c = kimi_config();
  EXPECT_EQ(k2::kv_bytes_per_token(c, 61, 2), 70272u);  // 576 elements x 2 B x 61 layers = 68.6 KiB
}

TEST(KvCache, Holds40000TokensAtTheStatedCost) {
  const k2::ModelConfig c = kimi_config();
  k2::LayerCache cache;
  const int chunk = 4000, total = 40000;
  for (int start = 0; start < total; start += chunk) {
    // Position p carries the value p in every latent element so placement can be checked.
    mx::array pos = mx::astype(mx::arange(start, start + chunk, mx::float32), mx::bfloat16);
    mx::array latent = mx::broadcast_to(mx::reshape(pos, {1, 1, chunk, 1}), {1, 1, chunk, c.kv_lora_rank});
    mx::array k_pe = mx::broadcast_to(mx::reshape(pos, {1, 1, chunk, 1}), {1, 1, chunk, c.qk_rope_head_dim});
    auto [all_latent, all_k] = cache.update_and_fetch(latent, k_pe);
    mx::eval(all_latent, all_k);
    EXPECT_EQ(all_latent.shape(2), start + chunk);
  }
  EXPECT_EQ(cache.offset(), total);
  // Capacity is rounded up to the 256-position growth step: 40,192 positions.
  EXPECT_EQ(cache.nbytes(), 40192u * k2::kv_bytes_per_token(c, 1, 2));
  auto [latent, k_pe] = cache.update_and_fetch(mx::zeros({1, 1, 1, c.kv_lora_rank}, mx::bfloat16),
                                               mx::zeros({1, 1, 1, c.qk_rope_head_dim}, mx::bfloat16));
  mx::array probe = mx::astype(mx::take(mx::slice(latent, {0, 0, 0, 0}, {1, 1, total, 1}),
                                        mx::array({0, 255, 256, 3999, 4000, 39999}), 2),
                               mx::float32);
  mx::eval(probe);
  // bf16 holds integers exactly up to 256; beyond that compare with its rounding.
  const std::vector<float> want{0, 255, 256, 3999, 4000, 39999};
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(probe.data<float>()[i], mx::astype(mx::astype(mx::array(want[i]), mx::bfloat16), mx::float32).item<float>()) << i;
}

TEST(KvCache, TrimForgetsPositions) {
  k2::LayerCache cache;
  cache.update_and_fetch(mx::ones({1, 1, 10, 8}), mx::ones({1, 1, 10, 4}));
  cache.trim_to(6);
  EXPECT_EQ(cache.offset(), 6);
  auto [l, k] = cache.update_and_fetch(mx::zeros({1, 1, 1, 8}), mx::zeros({1, 1, 1, 4}));
  EXPECT_EQ(l.shape(2), 7);
  EXPECT_FLOAT_EQ(mx::sum(l).item<float>(), 6.0f * 8);
  EXPECT_ANY_THROW(cache.trim_to(8));
}
