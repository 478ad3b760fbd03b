// Unit tests for io/tensor_prefetch: tensors read ahead by 1..8 threads, in chunks smaller than a tensor and
// under budgets smaller than one tensor, are byte-identical to Checkpoint::read; out-of-order and unlisted
// takes fall back to direct reads; a shard truncated after it was opened gives an error naming it, no hang.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/tensor_prefetch.h"
#include "mlx/mlx.h"

namespace {
namespace fs = std::filesystem;
namespace mx = mlx::core;
using nlohmann::json;

class PrefetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("k2_unit_prefetch_{:08x}{:08x}", rd(), rd());
    ASSERT_TRUE(fs::create_directories(dir_));
    // Three shards; sizes include 0 bytes and sizes that are not multiples of any chunk size used below.
    std::mt19937 rng(7);
    const std::vector<std::vector<int>> sizes = {{1000, 0, 37}, {4099, 1, 513}, {2048, 77}};
    json weight_map;
    for (size_t s = 0; s < sizes.size(); ++s) {
      const std::string file = fmt::format("model-{:05d}-of-00003.safetensors", s + 1);
      json h = json::object();
      std::vector<uint8_t> data;
      for (size_t t = 0; t < sizes[s].size(); ++t) {
        const std::string name = fmt::format("s{}.t{}", s, t);
        const uint64_t begin = data.size();
        for (int i = 0; i < sizes[s][t] * 4; ++i) data.push_back(static_cast<uint8_t>(rng()));
        h[name] = {{"dtype", "U32"}, {"shape", json::array({sizes[s][t]})}, {"data_offsets", {begin, data.size()}}};
        weight_map[name] = file;
        names_.push_back(name);
      }
      const std::string header = h.dump();
      std::ofstream out(dir_ / file, std::ios::binary);
      const uint64_t len = header.size();
      for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
      ASSERT_TRUE(out.good());
    }
    std::ofstream(dir_ / "model.safetensors.index.json") << json{{"weight_map", weight_map}}.dump();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Two groups: the first shard's tensors, then the rest (in reverse, unlike file order).
  std::vector<std::vector<std::string>> groups() const {
    std::vector<std::string> a(names_.begin(), names_.begin() + 3), b(names_.rbegin(), names_.rend() - 3);
    return {a, b};
  }

  static std::vector<uint8_t> bytes(mx::array a) {
    a.eval();
    const auto* p = static_cast<const uint8_t*>(a.data<void>());
    return std::vector<uint8_t>(p, p + a.nbytes());
  }

  fs::path dir_;
  std::vector<std::string> names_;
};

TEST_F(PrefetchTest, SameBytesAsDirectReadsForAnyThreadsChunkAndBudget) {
  const k2::Checkpoint ck(dir_);
  std::map<std::string, std::vector<uint8_t>> expected;
  for (const auto& n : names_) expected[n] = bytes(ck.read(n));
  for (int threads : {1, 3, 8})
    for (uint64_t chunk : {uint64_t{4}, uint64_t{100}, uint64_t{1} << 20})
      for (uint64_t budget : {uint64_t{1}, uint64_t{5000}, uint64_t{1} << 30}) {
        const auto order = groups();
        k2::TensorPrefetcher p(ck, order, k2::PrefetchOptions{threads, budget, chunk});
        for (const auto& g : order)
          for (const auto& n : g) {
            mx::array a = p.take(n);
            EXPECT_EQ(a.dtype(), mx::uint32);
            EXPECT_EQ(bytes(a), expected[n]) << n << " threads " << threads << " chunk " << chunk << " budget " << budget;
          }
      }
}

TEST_F(PrefetchTest, OutOfOrderRepeatedAndUnlistedTakesReadDirectly) {
  const k2::Checkpoint ck(dir_);
  k2::TensorPrefetcher p(ck, {{"s0.t0"}, {"s2.t0", "s1.t0"}}, k2::PrefetchOptions{4, 1, 16});
  EXPECT_EQ(bytes(p.take("s1.t0")), bytes(ck.read("s1.t0")));  // later than its turn, within group 1
  EXPECT_EQ(bytes(p.take("s0.t0")), bytes(ck.read("s0.t0")));  // group 0 after group 1: dropped, read again
  EXPECT_EQ(bytes(p.take("s1.t0")), bytes(ck.read("s1.t0")));  // taken twice
  EXPECT_EQ(bytes(p.take("s0.t2")), bytes(ck.read("s0.t2")));  // never listed
  EXPECT_THROW(p.take("no.such"), k2::CheckpointError);
  // s2.t0 is never taken: destruction must not wait for a taker.
}

TEST_F(PrefetchTest, ShardTruncatedAfterOpeningNamesTheFileAndTensor) {
  const k2::Checkpoint ck(dir_);
  for (const auto& n : names_) ck.info(n);  // opens and validates every shard while they are whole
  const fs::path shard = dir_ / "model-00002-of-00003.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 3000);
  for (int threads : {1, 4}) {
    const auto order = groups();
    k2::TensorPrefetcher p(ck, order, k2::PrefetchOptions{threads, 1 << 30, 64});
    EXPECT_EQ(bytes(p.take("s0.t0")), bytes(ck.read("s0.t0")));
    try {
      for (const auto& n : order[1]) p.take(n);
      ADD_FAILURE() << "reading a truncated shard succeeded";
    } catch (const k2::CheckpointError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("model-00002-of-00003.safetensors"), std::string::npos) << msg;
      EXPECT_NE(msg.find("short read of tensor 's1."), std::string::npos) << msg;
    }
  }
}

}  // namespace
