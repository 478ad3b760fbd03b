// Unit tests for io/checkpoint: model folders with one file, with shards and an HF index, and the
// inconsistent layouts that must be rejected (missing shards, promised tensors absent, duplicates,
// path traversal). Shard files are written byte by byte here.
#include <gtest/gtest.h>

#include <cstdint>
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
#include "mlx/mlx.h"

namespace {
namespace fs = std::filesystem;
namespace mx = mlx::core;
using nlohmann::json;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device rd;
    root_ = fs::temp_directory_path() / fmt::format("k2_unit_ckpt_{}_{:08x}{:08x}", info->name(), rd(), rd());
    dir_ = root_ / "model";
    ASSERT_TRUE(fs::create_directories(dir_));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Writes a safetensors file holding U32 tensors (name -> values, 1-D), laid out in name order.
  void write_shard(const fs::path& path, const std::map<std::string, std::vector<uint32_t>>& tensors) {
    json h = json::object();
    std::vector<uint8_t> data;
    for (const auto& [name, values] : tensors) {
      const uint64_t begin = data.size();
      for (uint32_t v : values)
        for (int i = 0; i < 4; ++i) data.push_back(static_cast<uint8_t>(v >> (8 * i)));
      h[name] = {{"dtype", "U32"}, {"shape", json::array({values.size()})}, {"data_offsets", {begin, data.size()}}};
    }
    const std::string header = h.dump();
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    ASSERT_TRUE(out.good());
  }

  void write_text(const fs::path& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
    ASSERT_TRUE(out.good());
  }

  void write_index(const std::map<std::string, std::string>& weight_map) {
    json idx = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
    write_text(dir_ / "model.safetensors.index.json", idx.dump(2));
  }

  // Expects opening `dir` to throw CheckpointError whose message contains all `parts`.
  // Opening the folder, or (for shards an index defers) touching every tensor, must fail with a
  // message naming each of `parts`.
  void expect_rejected(const fs::path& dir, const std::vector<std::string>& parts) {
    try {
      k2::Checkpoint c(dir);
      for (const auto& name : c.names()) c.info(name);
      ADD_FAILURE() << "expected CheckpointError for " << dir;
    } catch (const k2::CheckpointError& e) {
      const std::string msg = e.what();
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    }
  }

  static std::vector<uint32_t> values(k2::Checkpoint& c, const std::string& name) {
    auto a = c.read(name);
    EXPECT_EQ(a.dtype(), mx::uint32);
    a.eval();
    return std::vector<uint32_t>(a.data<uint32_t>(), a.data<uint32_t>() + a.size());
  }

  fs::path root_, dir_;
};

using U = std::vector<uint32_t>;

TEST_F(CheckpointTest, SingleFileFolder) {
  write_shard(dir_ / "model.safetensors", {{"model.norm.weight", {1, 2, 3}}, {"lm_head.weight", {9, 8}}});
  write_text(dir_ / "config.json", "{}");  // other files in the folder are ignored

  k2::Checkpoint c(dir_);
  EXPECT_EQ(c.dir(), dir_);
  EXPECT_EQ(c.shard_count(), 1u);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"lm_head.weight", "model.norm.weight"}));
  EXPECT_TRUE(c.contains("model.norm.weight"));
  EXPECT_FALSE(c.contains("model.embed_tokens.weight"));
  EXPECT_EQ(c.info("model.norm.weight").shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(c.info("model.norm.weight").dtype, k2::StDtype::U32);
  ASSERT_TRUE(c.find("lm_head.weight").has_value());
  EXPECT_EQ(c.find("lm_head.weight")->nbytes, 8u);
  EXPECT_FALSE(c.find("missing").has_value());
  EXPECT_EQ(values(c, "model.norm.weight"), (U{1, 2, 3}));
  EXPECT_EQ(values(c, "lm_head.weight"), (U{9, 8}));
}

TEST_F(CheckpointTest, MissingTensorReadAndInfoNameTheTensor) {
  write_shard(dir_ / "model.safetensors", {{"a", {1}}});
  k2::Checkpoint c(dir_);
  for (int which = 0; which < 2; ++which) {
    try {
      if (which == 0)
        c.read("model.layers.7.mlp.gate.weight");
      else
        c.info("model.layers.7.mlp.gate.weight");
      ADD_FAILURE() << "expected CheckpointError";
    } catch (const k2::CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.7.mlp.gate.weight"), std::string::npos) << e.what();
    }
  }
}

TEST_F(CheckpointTest, ShardedFolderWithIndex) {
  const std::string s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
  write_shard(dir_ / s1, {{"model.embed_tokens.weight", {10, 11}}, {"model.layers.0.w", {12}}});
  write_shard(dir_ / s2, {{"model.layers.1.w", {20, 21, 22}}, {"lm_head.weight", {23}}});
  write_index({{"model.embed_tokens.weight", s1},
               {"model.layers.0.w", s1},
               {"model.layers.1.w", s2},
               {"lm_head.weight", s2}});

  k2::Checkpoint c(dir_);
  EXPECT_EQ(c.shard_count(), 2u);
  EXPECT_EQ(c.names().size(), 4u);
  EXPECT_EQ(values(c, "model.embed_tokens.weight"), (U{10, 11}));
  EXPECT_EQ(values(c, "model.layers.0.w"), (U{12}));
  EXPECT_EQ(values(c, "model.layers.1.w"), (U{20, 21, 22}));
  EXPECT_EQ(values(c, "lm_head.weight"), (U{23}));
}

TEST_F(CheckpointTest, ShardedFolderWithoutIndex) {
  write_shard(dir_ / "b.safetensors", {{"y", {2}}});
  write_shard(dir_ / "a.safetensors", {{"x", {1}}});
  k2::Checkpoint c(dir_);
  EXPECT_EQ(c.shard_count(), 2u);
  EXPECT_EQ(values(c, "x"), (U{1}));
  EXPECT_EQ(values(c, "y"), (U{2}));
}

TEST_F(CheckpointTest, IndexDecidesWhichShardsAreRead) {
  // A leftover consolidated file next to an index is not part of the checkpoint (HF convention), so its
  // copies of the same tensors are not duplicates.
  write_shard(dir_ / "model-00001-of-00001.safetensors", {{"w", {5}}});
  write_shard(dir_ / "consolidated.safetensors", {{"w", {6}}});
  write_index({{"w", "model-00001-of-00001.safetensors"}});
  k2::Checkpoint c(dir_);
  EXPECT_EQ(c.shard_count(), 1u);
  EXPECT_EQ(values(c, "w"), (U{5}));
}

TEST_F(CheckpointTest, IndexNamesMissingShard) {
  write_shard(dir_ / "model-00001-of-00002.safetensors", {{"a", {1}}});
  write_index({{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}});
  expect_rejected(dir_, {"model-00002-of-00002.safetensors"});
}

TEST_F(CheckpointTest, ShardsOutsideTheNeededRangeAreNeverOpened) {
  // A pipeline stage's machine may hold only its own shards: the others can be missing or broken.
  write_shard(dir_ / "model-00001-of-00003.safetensors", {{"model.layers.0.w", {1, 2}}});
  write_text(dir_ / "model-00002-of-00003.safetensors", "truncated");
  write_index({{"model.layers.0.w", "model-00001-of-00003.safetensors"},
               {"model.layers.1.w", "model-00002-of-00003.safetensors"},
               {"model.layers.2.w", "model-00003-of-00003.safetensors"}});
  k2::Checkpoint c(dir_);
  EXPECT_EQ(c.names().size(), 3u);
  EXPECT_EQ(values(c, "model.layers.0.w"), (std::vector<uint32_t>{1, 2}));
  try {
    c.info("model.layers.1.w");
    ADD_FAILURE() << "a truncated shard must be rejected when it is needed";
  } catch (const k2::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model-00002-of-00003.safetensors"), std::string::npos) << e.what();
  }
  try {
    c.read("model.layers.2.w");
    ADD_FAILURE() << "a missing shard must be rejected when it is needed";
  } catch (const k2::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model-00003-of-00003.safetensors"), std::string::npos) << e.what();
  }
}

TEST_F(CheckpointTest, IndexNamesTensorTheShardLacks) {
  write_shard(dir_ / "model-00001-of-00001.safetensors", {{"a", {1}}});
  write_index({{"a", "model-00001-of-00001.safetensors"}, {"model.layers.3.ghost", "model-00001-of-00001.safetensors"}});
  expect_rejected(dir_, {"model.layers.3.ghost"});
}

TEST_F(CheckpointTest, SameTensorInTwoShards) {
  write_shard(dir_ / "part1.safetensors", {{"dup.weight", {1}}, {"only1", {3}}});
  write_shard(dir_ / "part2.safetensors", {{"dup.weight", {2}}, {"only2", {4}}});
  expect_rejected(dir_, {"dup.weight", "part1.safetensors", "part2.safetensors"});
  // The same holds when an index lists both shards.
  write_index({{"dup.weight", "part1.safetensors"}, {"only1", "part1.safetensors"}, {"only2", "part2.safetensors"}});
  expect_rejected(dir_, {"dup.weight"});
}

TEST_F(CheckpointTest, EmptyFolder) {
  expect_rejected(dir_, {dir_.string()});
  write_text(dir_ / "config.json", "{}");  // no safetensors at all
  expect_rejected(dir_, {dir_.string()});
  write_index({});  // an index with an empty weight_map
  expect_rejected(dir_, {dir_.string()});
}

TEST_F(CheckpointTest, PathTraversalInShardName) {
  // A real shard outside the model folder that the index tries to reach.
  write_shard(root_ / "outside.safetensors", {{"a", {1}}});
  write_index({{"a", "../outside.safetensors"}});
  expect_rejected(dir_, {"../outside.safetensors"});

  fs::create_directories(dir_ / "sub");
  write_index({{"a", "sub/../../outside.safetensors"}});
  expect_rejected(dir_, {"sub/../../outside.safetensors"});

  const std::string abs = (root_ / "outside.safetensors").string();
  write_index({{"a", abs}});
  expect_rejected(dir_, {abs});
}

TEST_F(CheckpointTest, NotADirectory) {
  const fs::path file = root_ / "model.safetensors";
  write_shard(file, {{"a", {1}}});
  expect_rejected(file, {file.string()});
  expect_rejected(root_ / "does-not-exist", {"does-not-exist"});
}

TEST_F(CheckpointTest, MalformedIndex) {
  write_shard(dir_ / "model.safetensors", {{"a", {1}}});
  write_text(dir_ / "model.safetensors.index.json", "{\"weight_map\": {");
  expect_rejected(dir_, {"model.safetensors.index.json"});
  write_text(dir_ / "model.safetensors.index.json", R"({"metadata": {}})");
  expect_rejected(dir_, {"model.safetensors.index.json", "weight_map"});
  write_text(dir_ / "model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
  expect_rejected(dir_, {"model.safetensors.index.json", "'a'"});
}

TEST_F(CheckpointTest, MalformedShardIsRejected) {
  write_shard(dir_ / "a.safetensors", {{"ok", {1}}});
  write_text(dir_ / "b.safetensors", "short");
  expect_rejected(dir_, {"b.safetensors"});
}

}  // namespace
